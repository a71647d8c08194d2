"""curves.json entries from hand-made run folders: KD end step, teacher steps, the LLM's cumulative time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import SaltError
from trainer.experiments.curves import read_curves, run_curve, write_curves


def make_run(folder: Path, summary: dict[str, Any], *, step_times: bool = True) -> Path:
    folder.mkdir(parents=True)
    records: list[dict[str, Any]] = [{"kind": "eval", "step": 0, "val_loss": 9.0, "val_acc": 0.0}]
    for step in range(1, 5):
        rec: dict[str, Any] = {"kind": "train", "step": step, "loss": 5.0}
        if step_times:
            rec.update(step_s=1.0 + step, data_wait_s=0.5)  # LLM time 1.5, 2.5, 3.5, 4.5
        records.append(rec)
        if step % 2 == 0:
            records.append({"kind": "eval", "step": step, "val_loss": 9.0 - step, "val_acc": step / 10})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    base = {"mode": "salt", "steps": 4, "kd_steps": 2, "phase_one_end": 3, "train_s": 16.0, "data_wait_s": 2.0,
            "teacher_s": 3.0, "service": {"cache_hits": 5, "cache_misses": 1, "slm_forward_passes": 1}}
    (folder / "summary.json").write_text(json.dumps({**base, **summary}))
    return folder


def test_an_entry_holds_the_curve_with_the_llm_time_summed_per_step(tmp_path: Path) -> None:
    c = run_curve("salt", 3, make_run(tmp_path / "r", {}))
    assert c["evals"] == [[0, 9.0, 0.0, 0.0], [2, 7.0, 0.2, 4.0], [4, 5.0, 0.4, 12.0]]
    assert (c["mode"], c["seed"], c["kind"], c["steps"]) == ("salt", 3, "salt", 4)
    assert c["llm_s"] == 14.0 and c["teacher_s"] == 3.0 and c["cache_hits"] == 5
    # No kd_end_step in the summary: the configured n_kd; the linear transition adds one teacher step.
    assert (c["kd_end_step"], c["kd_end_from"], c["teacher_steps"]) == (2, "config", 3)


def test_the_runs_own_kd_end_step_wins(tmp_path: Path) -> None:
    c = run_curve("salt", 0, make_run(tmp_path / "r", {"kd_end_step": 1}))
    assert (c["kd_end_step"], c["kd_end_from"], c["teacher_steps"]) == (1, "run", 2)
    base = run_curve("baseline", 0, make_run(tmp_path / "b", {"mode": "baseline", "kd_steps": 0,
                                                                "phase_one_end": 0, "teacher_s": 0.0}))
    assert (base["kd_end_step"], base["kd_end_from"], base["teacher_steps"]) == (None, "none", 0)


def test_runs_without_step_times_pro_rate_the_total(tmp_path: Path) -> None:
    c = run_curve("salt", 0, make_run(tmp_path / "r", {}, step_times=False))
    assert [e[3] for e in c["evals"]] == [0.0, 7.0, 14.0]


def test_curves_json_round_trips_and_refuses_other_files(tmp_path: Path) -> None:
    entry = run_curve("salt", 0, make_run(tmp_path / "r", {}))
    write_curves([entry, {**entry, "seed": 1}], tmp_path)
    assert [c["seed"] for c in read_curves(tmp_path)] == [0, 1]
    assert len((tmp_path / "curves.json").read_text().splitlines()) == 4  # one line per run
    with pytest.raises(SaltError, match=r"cannot read .*curves\.json"):
        read_curves(tmp_path / "r")
    (tmp_path / "curves.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(SaltError, match=r"is not a curves\.json"):
        read_curves(tmp_path)
