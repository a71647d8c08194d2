"""Per-run and per-mode figures computed from hand-made curves: reach, no saving, never, wall-clock."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.experiments.config import ExperimentConfig
from trainer.experiments.results import compute
from trainer.experiments.tables import ablation_markdown, results_markdown


def curve(mode: str, seed: int, losses: list[float], *, kd_end: int | None = None, teacher_s: float = 0.0,
          seconds_per_step: float = 1.0) -> dict[str, Any]:
    steps = [0, 25, 50, 75, 100]
    return {"mode": mode, "seed": seed, "kind": mode, "run": f"runs/{mode}-{seed}", "steps": 100,
            "kd_end_step": kd_end, "kd_end_from": "run" if kd_end else "none", "teacher_steps": kd_end or 0,
            "llm_s": 100 * seconds_per_step, "teacher_s": teacher_s, "stall": 0.0, "cache_hits": None,
            "cache_misses": None, "slm_forwards": None, "fallback_batches": 0,
            "evals": [[s, v, 0.3, s * seconds_per_step] for s, v in zip(steps, losses, strict=True)]}


CFG = ExperimentConfig.of(llm_steps=100, modes=("baseline", "salt"), seeds=(0, 1))


def test_reach_saving_and_wall_clock_per_run_and_per_mode() -> None:
    curves = [
        curve("baseline", 0, [9.0, 6.0, 5.0, 4.5, 4.0]),
        curve("baseline", 1, [9.0, 6.0, 5.0, 4.5, 4.0]),
        # Seed 0 crosses 4.0 halfway between steps 50 (4.2) and 75 (3.8); 20 s of teacher time over 40 steps.
        curve("salt", 0, [9.0, 5.0, 4.2, 3.8, 3.7], kd_end=40, teacher_s=20.0, seconds_per_step=1.2),
        # Seed 1 gets there only at its last evaluation: no saving.
        curve("salt", 1, [9.0, 5.0, 4.4, 4.1, 3.9], kd_end=40, teacher_s=20.0, seconds_per_step=1.2),
    ]
    res = compute(CFG, {"run": "slm", "val_loss": 3.5, "train_s": 30.0}, curves)
    assert res["slm"]["kd_runs"] == 2 and res["slm"]["share_s"] == 15.0
    rows = {(r["mode"], r["seed"]): r for r in res["runs"]}
    s0, s1, b0 = rows[("salt", 0)], rows[("salt", 1)], rows[("baseline", 0)]
    assert s0["reach_step"] == pytest.approx(62.5) and s0["reach_fraction"] == pytest.approx(0.625) and s0["saving"]
    # 62.5 steps of 1.2 s, 20 s of teacher time (all of phase one), 15 s of the SLM.
    assert s0["time_to_reach"] == pytest.approx({"llm_s": 75.0, "teacher_s": 20.0, "slm_share_s": 15.0,
                                                 "total_s": 110.0})
    assert b0["reach_step"] == 100.0 and b0["time_to_reach_s"] == 100.0 and not b0["saving"]
    assert s0["time_ratio"] == pytest.approx(1.1)  # fewer steps, but more wall-clock than the baseline
    assert s1["reach_step"] == 100.0 and s1["reach_fraction"] == 1.0 and not s1["saving"]
    assert s1["time_ratio"] == pytest.approx((120 + 20 + 15) / 100)
    # The 70% columns: exactly step 70, between 4.2 (50) and 3.8 (75).
    assert s0["step_70"] == 70.0 and s0["loss_70"] == pytest.approx(3.88)
    salt = res["modes"]["salt"]
    assert (salt["reached"], salt["saved"]) == (2, 1)
    assert salt["reach_fraction_mean"] == pytest.approx(0.8125) and salt["reach_fraction_worst"] == 1.0
    assert salt["time_ratio_worst"] == pytest.approx(1.55) and salt["kd_end_steps"] == [40, 40]
    text = results_markdown(res)
    assert "| salt | 100 |" in text and "81% (worst no saving)" in text and "| 40 |" in text
    assert "| salt | 0 | 3.7000 | 40 | 62.5 | 62% | 75 s | 20 s | 15 s | 110 s | 1.10 |" in text
    assert "| salt | 1 | 3.9000 | 40 | 100.0 | no saving |" in text
    # The lead that survives: seed 0 holds 0.62 at step 80 where 0.40 (the baseline's last fall) is needed.
    assert s0["lead"] == pytest.approx({"kd_end": 0.88, "at_80": 0.62, "needed_80": 0.4, "end": 0.3})
    assert b0["lead"] is None and salt["lead_needed_80"] == pytest.approx({"mean": 0.4, "std": 0.0})
    assert "| salt | 0 | 40 | +0.8800 | +0.6200 | +0.4000 | +0.3000 |" in text
    assert "+0.480 / 0.400" in ablation_markdown([res])  # seed 1: 4.4 - 4.06 = 0.34 at step 80


def test_a_run_that_ends_above_the_baseline_never_reaches_it() -> None:
    curves = [curve("baseline", 0, [9.0, 6.0, 5.0, 4.5, 4.0]),
              curve("salt", 0, [9.0, 3.0, 3.5, 4.0, 4.1], kd_end=40)]  # dips far below, ends above
    res = compute(CFG.with_(seeds=(0,)), {"run": "slm", "val_loss": 3.5, "train_s": None}, curves)
    row = next(r for r in res["runs"] if r["mode"] == "salt")
    assert row["reach_step"] is None and row["time_to_reach"] is None and row["time_ratio"] is None
    salt = res["modes"]["salt"]
    assert salt["reached"] == 0 and salt["reach_fraction_mean"] is None and salt["time_ratio"] is None
    text = results_markdown(res)
    assert "| 0/1 | 0/1 | never |" in text and "| salt | 0 | 4.1000 | 40 | never | never |" in text
