"""When phase one ends: a fixed n_kd, or ``--kd-until auto`` against the SLM's validation loss (a real service)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.config import ConfigError
from shared.data import PackedDataset
from tests.servers import ROOT, sqlite_server, stop_server
from trainer.config import TrainConfig
from trainer.phase_one import PhaseOne
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics
from trainer.recipe.setup import _phase_one_line


def cfg_of(**kw: object) -> TrainConfig:
    base = dict(data="d", out="o", mode="salt", steps=20, n_kd=10, warmup_steps=2, service_url="http://x")
    return TrainConfig.of(**{**base, **kw})  # type: ignore[arg-type]


def test_fixed_n_kd_ends_at_n_kd_and_its_transition_adds_the_fall() -> None:
    p = PhaseOne(cfg_of(kd_transition="cosine", kd_transition_steps=4))
    assert (p.auto, p.end_step, p.phase_one_end) == (False, 10, 14)
    assert not p.open_at(0)
    assert PhaseOne(cfg_of(mode="baseline")).phase_one_end == 0
    assert PhaseOne(cfg_of(mode="kd_full")).end_step == 20


def test_auto_is_open_until_decided_or_n_kd_and_moves_the_transition() -> None:
    p = PhaseOne(cfg_of(kd_until="auto", kd_auto_margin=0.1, kd_transition="linear", kd_transition_steps=4))
    assert p.auto and p.open_at(0) and p.open_at(9) and not p.open_at(10)
    assert (p.end_step, p.phase_one_end) == (10, 14)  # undecided: n_kd is the most
    assert p.close_enough(3.1, 3.0) and not p.close_enough(3.11, 3.0)
    p.decided = 4
    assert not p.open_at(6)
    assert (p.end_step, p.phase_one_end) == (4, 8)
    assert [p.weight_at(s) for s in range(3, 9)] == pytest.approx([0.5, 0.5, 0.375, 0.25, 0.125, 0.0])
    assert not PhaseOne(cfg_of(mode="baseline", kd_until="auto")).auto


def test_the_start_up_line_names_phase_one_s_end_and_the_fall_apart() -> None:
    auto = _phase_one_line(PhaseOne(cfg_of(kd_until="auto", kd_transition="linear", kd_transition_steps=4)))
    assert auto.endswith("within 0.05 nats of the SLM (at most until step 10), "
                         "then a linear fall of the KD weight to 0 by step 14")
    assert _phase_one_line(PhaseOne(cfg_of())) == ", phase one (KD) until step 10"
    assert _phase_one_line(PhaseOne(cfg_of(mode="baseline"))) == ""


@pytest.mark.parametrize(("kw", "match"), [
    ({"kd_until": "sometime"}, "kd_until"),
    ({"kd_auto_margin": -0.1}, "kd_auto_margin"),
    ({"kd_warmup_steps": 3}, "kd-transition wsd"),
    ({"kd_select": "everywhere"}, "kd_select"),
    ({"kd_select_max_loss": 0.0}, "kd_select_max_loss"),
])
def test_bad_phase_one_settings_are_refused(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        cfg_of(**kw)


@pytest.fixture(scope="module")
def trained_slm(tiny_dataset: PackedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SLM trained a little on the tiny dataset, so a student can come close to it."""
    out = tmp_path_factory.mktemp("slm") / "slm"
    train(TrainConfig.of(data=str(tiny_dataset.path), out=str(out), preset="slm-tiny", steps=30, batch_size=8,
                         warmup_steps=2, eval_every=30, eval_windows=8, ckpt_every=30, device="cpu"), progress=False)
    return out / "checkpoint"


@pytest.fixture
def slm_service(trained_slm: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    with sqlite_server(trained_slm, tmp_path) as served:
        yield served


def test_auto_ends_phase_one_near_the_slm_asks_nothing_after_and_resume_keeps_it(
    tiny_dataset: PackedDataset, tmp_path: Path, slm_service: tuple[subprocess.Popen, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, url = slm_service
    import trainer.teacher as tt

    asked: list[int] = []
    windows_for = tt.Teacher.windows_for

    def recording(self: tt.Teacher, step: int, micro: int) -> np.ndarray:
        asked.append(step)
        return windows_for(self, step, micro)

    monkeypatch.setattr(tt.Teacher, "windows_for", recording)
    depth, n_kd, steps, margin = 1, 12, 14, 0.6
    cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "a"), preset="llm-tiny", mode="salt",
                         steps=steps, n_kd=n_kd, batch_size=4, warmup_steps=1, eval_every=2, eval_windows=16,
                         ckpt_every=2, device="cpu", service_url=url, kd_k=8, kd_until="auto",
                         kd_auto_margin=margin, prefetch_depth=depth)
    summary = train(cfg, progress=False)
    records = read_metrics(tmp_path / "a")
    (end,) = [r for r in records if r["kind"] == "kd_end"]
    e = end["step"]
    assert 0 < e < n_kd and summary["kd_end_step"] == e == summary["phase_one_end"]
    # Ended at the first evaluation within the margin of the SLM, none before.
    evals = {r["step"]: r["val_loss"] for r in records if r["kind"] == "eval"}
    assert end["val_loss"] == evals[e] <= end["slm_val_loss"] + margin
    assert all(v > end["slm_val_loss"] + margin for s, v in evals.items() if s < e)
    train_recs = [r for r in records if r["kind"] == "train"]
    assert [r["kd"] is not None for r in train_recs] == [True] * e + [False] * (steps - e)
    # No labels asked past the decision beyond what the prefetcher already had in flight (depth + 1 steps).
    assert max(asked) <= e + depth and summary["service"]["requests"] == len(asked) <= e + depth + 1 < n_kd

    # The same run stopped after the decision resumes with the service gone: the checkpoint keeps the end.
    import trainer.recipe.metrics as rm

    original = rm.MetricsLog.write

    class Stop(Exception):
        pass

    def write(self: rm.MetricsLog, record: dict[str, object]) -> None:
        original(self, record)
        if record["kind"] == "train" and record["step"] == e + 1:
            raise Stop

    b = cfg.with_(out=str(tmp_path / "b"))
    monkeypatch.setattr(rm.MetricsLog, "write", write)
    with pytest.raises(Stop):
        train(b, progress=False)
    monkeypatch.setattr(rm.MetricsLog, "write", original)
    stop_server(proc)
    resumed = train(b, resume=True, progress=False)
    assert resumed["service"] is None and resumed["kd_end_step"] == e
    assert resumed["val_loss"] == summary["val_loss"]
    assert [r for r in read_metrics(tmp_path / "b") if r["kind"] == "kd_end"] == [end]


def test_an_experiment_passes_its_phase_one_settings_to_its_kd_runs() -> None:
    from trainer.experiments.config import ExperimentConfig
    from trainer.experiments.stages import llm_config

    exp = ExperimentConfig.of(kd_until="auto", kd_auto_margin=0.1, kd_transition="wsd", kd_warmup_steps=5,
                              kd_select="topk")
    run = llm_config(exp, "salt", 0, 100, service_url="http://x", n_kd=100)
    assert (run.kd.kd_until, run.kd.kd_auto_margin, run.kd.kd_select) == ("auto", 0.1, "topk")
    assert PhaseOne(run).weight_at(0) == 0.5 / 5
    assert llm_config(exp, "baseline", 0, 100).kd.kd_until == "n_kd"  # a baseline is named without them


def test_two_processes_end_phase_one_at_the_same_step_as_one(
    tiny_dataset: PackedDataset, tmp_path: Path, slm_service: tuple[subprocess.Popen, str]
) -> None:
    """Under torchrun the evaluation's sums and the SLM's loss are shared: both ranks end where one process does."""
    _, url = slm_service
    args = dict(preset="llm-tiny", mode="salt", steps=10, n_kd=9, batch_size=4, grad_accum=2, warmup_steps=1,
                eval_every=2, eval_windows=16, ckpt_every=10, device="cpu", precision="fp32", service_url=url,
                kd_k=8, kd_until="auto", kd_auto_margin=0.6)
    one = train(TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "one"), **args), progress=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "trainer",
           "train", "--data", str(tiny_dataset.path), "--out", str(tmp_path / "two"), "--no-progress"]
    for k, v in args.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert 0 < one["kd_end_step"] < 9 and two["kd_end_step"] == one["kd_end_step"]
    # Both ranks followed the same schedule: the summed losses match the one-process run's.
    losses = [[r["loss"] for r in read_metrics(tmp_path / run) if r["kind"] == "train"] for run in ("one", "two")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
