"""kill -9 of a ``salt train`` process mid phase one (KD from a real service) and mid phase two; each time
``--resume`` goes on, and the final parameters equal those of an uninterrupted run (CPU, fp32)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shared.data import PackedDataset
from tests.servers import ROOT, start_server, stop_server

pytestmark = pytest.mark.e2e

STEPS, N_KD, CKPT_EVERY = 80, 40, 5


def _cmd(ds: PackedDataset, out: Path, url: str, resume: bool = False) -> list[str]:
    args = [sys.executable, "-m", "trainer", "train", "--data", str(ds.path), "--out", str(out),
            "--preset", "llm-tiny", "--mode", "salt", "--steps", str(STEPS), "--n-kd", str(N_KD),
            "--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "2", "--eval-every", "20",
            "--eval-windows", "8", "--ckpt-every", str(CKPT_EVERY), "--device", "cpu", "--precision", "fp32",
            "--kd-k", "8", "--service-url", url, "--no-progress"]
    return [*args, "--resume"] if resume else args


def _env() -> dict[str, str]:
    return {**os.environ, "SALT_API_KEY": "k", "OMP_NUM_THREADS": "1"}


def _ckpt_step(out: Path) -> int:
    try:
        return int(json.loads((out / "checkpoint" / "config.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1  # none yet, or being swapped in


def _kill_after_checkpoint(cmd: list[str], out: Path, lo: int, hi: int) -> int:
    """Run ``cmd``; SIGKILL it once a checkpoint in [lo, hi] is on disk. Returns the checkpoint's step."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while (step := _ckpt_step(out)) < lo:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lo <= step <= hi, f"killed too late (checkpoint at step {step})"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()  # it did not finish
    return _ckpt_step(out)


def test_kill_9_mid_phase_one_and_mid_phase_two_then_resume(tiny_checkpoint: Path, tiny_dataset: PackedDataset,
                                                             tmp_path: Path) -> None:
    proc, url = start_server(tiny_checkpoint, f"sqlite:///{tmp_path / 'cache.sqlite'}", SALT_API_KEY="k")
    try:
        straight = tmp_path / "straight"
        subprocess.run(_cmd(tiny_dataset, straight, url), cwd=ROOT, env=_env(), check=True, timeout=300,
                       capture_output=True)

        split = tmp_path / "split"
        first = _kill_after_checkpoint(_cmd(tiny_dataset, split, url), split, CKPT_EVERY, N_KD - CKPT_EVERY)
        assert first < N_KD  # phase one: KD batches from the service
        second = _kill_after_checkpoint(_cmd(tiny_dataset, split, url, resume=True), split,
                                        N_KD + CKPT_EVERY, STEPS - CKPT_EVERY)
        assert N_KD < second < STEPS  # phase two: raw data only
        r = subprocess.run(_cmd(tiny_dataset, split, url, resume=True), cwd=ROOT, env=_env(), timeout=300,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        stop_server(proc)

    a = load_file(str(straight / "checkpoint" / "model.safetensors"))
    b = load_file(str(split / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((split / "summary.json").read_text())
    assert sa["val_loss"] == pytest.approx(sb["val_loss"], rel=1e-6)
