"""``salt train`` under torchrun: 2 CPU processes (gloo) train like 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.data import PackedDataset
from tests.servers import ROOT
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics

# 2 ranks each average over half the rows, then DDP averages the two gradients: the same sums in another
# order, so losses agree to float32 rounding, far inside this tolerance (measured: at most 1e-6 relative).
# fp32 throughout: under bf16 autocast (the default on CPUs with native bf16) the reordered sums differ by
# bf16 rounding, which compounds over steps and would hide a real mismatch.
RTOL = 1e-4
ARGS = dict(preset="llm-tiny", steps=6, batch_size=4, grad_accum=2, warmup_steps=1, eval_every=3,
            eval_windows=8, ckpt_every=3, device="cpu", lr=3e-3, precision="fp32")


def torchrun(ds: PackedDataset, out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer", "train", "--data", str(ds.path), "--out", str(out), "--no-progress"]
    for k, v in ARGS.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out) if r["kind"] == "train"]


def test_two_processes_match_one_and_resume(tiny_dataset: PackedDataset, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "one"), **ARGS)  # type: ignore[arg-type]
    one = train(cfg, progress=False)

    torchrun(tiny_dataset, tmp_path / "two")
    recs = [r for r in read_metrics(tmp_path / "two") if r["kind"] == "train"]
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5, 6]  # one writer: each step logged once
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=RTOL)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=RTOL)
    assert not list((tmp_path / "two").glob(".checkpoint*"))  # no half-written or competing checkpoint

    # Resume under DDP from a checkpoint at step 3 (written by a 1-process run stopped at step 4).
    import trainer.recipe.metrics as tt

    original = tt.MetricsLog.write

    class Stop(Exception):
        pass

    def write(self: tt.MetricsLog, record: dict[str, object]) -> None:
        original(self, record)
        if record["kind"] == "train" and record["step"] == 4:
            raise Stop

    monkeypatch.setattr(tt.MetricsLog, "write", write)
    with pytest.raises(Stop):
        train(cfg.with_(out=str(tmp_path / "resumed")), progress=False)
    monkeypatch.undo()
    torchrun(tiny_dataset, tmp_path / "resumed", "--resume")
    assert [r["step"] for r in read_metrics(tmp_path / "resumed") if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(losses(tmp_path / "resumed"), losses(tmp_path / "one"), rtol=RTOL)
    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    np.testing.assert_allclose(resumed["val_loss"], one["val_loss"], rtol=RTOL)
