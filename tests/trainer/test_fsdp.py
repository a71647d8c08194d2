"""``salt train --parallel fsdp`` under torchrun: 2 CPU processes (gloo) with the student sharded train like one
process, write whole checkpoints (a Hugging Face student's loads in transformers) and resume; a Hugging Face
student under DDP as well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.data import PackedDataset
from tests.hf_models import config_file, transformers_logits
from tests.servers import ROOT
from tests.trainer.test_train import _Stop, _train_until
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics

RTOL = 1e-4  # the same sums in another order: float32 rounding only (see test_ddp.py)
ARGS = dict(steps=6, batch_size=4, grad_accum=2, warmup_steps=1, eval_every=3, eval_windows=7, ckpt_every=3,
            device="cpu", lr=3e-3, precision="fp32")


def torchrun(ds: PackedDataset, out: Path, model: dict[str, str], *extra: str, parallel: str = "fsdp") -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "trainer",
           "train", "--data", str(ds.path), "--out", str(out), "--no-progress", "--parallel", parallel]
    for k, v in {**ARGS, **model}.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out) if r["kind"] == "train"]


@pytest.mark.parametrize("student", ["preset", "hf"])
def test_sharded_student_trains_like_one_process_and_resumes(student: str, tiny_dataset: PackedDataset,
                                                             tmp_path: Path) -> None:
    model = ({"preset": "llm-tiny"} if student == "preset"
             else {"model": str(config_file(tmp_path / "llama", "llama", tiny_dataset))})
    one = train(TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "one"), **ARGS, **model),
                progress=False)
    torchrun(tiny_dataset, tmp_path / "two", model)
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=RTOL)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2 and two["params"] == one["params"]  # counted whole, not per shard
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=RTOL)  # 7 windows: uneven over 2 ranks

    # A one-process fsdp run stopped after step 4 (checkpoint at 3), resumed sharded: the same losses.
    split = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "split"), parallel="fsdp", **ARGS, **model)
    with pytest.raises(_Stop):
        _train_until(split, stop_after=4)
    torchrun(tiny_dataset, tmp_path / "split", model, "--resume")
    np.testing.assert_allclose(losses(tmp_path / "split"), losses(tmp_path / "one"), rtol=RTOL)
    if student == "hf":  # the gathered checkpoint is a whole Hugging Face folder
        ids = torch.from_numpy(tiny_dataset.val.windows[:2, :-1].astype("int64"))
        torch.testing.assert_close(transformers_logits(tmp_path / "two" / "checkpoint", ids, tiny_dataset.vocab_size),
                                   transformers_logits(tmp_path / "one" / "checkpoint", ids, tiny_dataset.vocab_size),
                                   rtol=1e-3, atol=1e-4)


def test_hugging_face_student_under_ddp_trains_like_one_process(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    # Llama: no dropout, so one process and two draw nothing different (GPT-2's default dropout would).
    model = {"model": str(config_file(tmp_path / "llama", "llama", tiny_dataset))}
    one = train(TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "one"), **ARGS, **model),
                progress=False)
    torchrun(tiny_dataset, tmp_path / "two", model, parallel="ddp")
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=RTOL)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2 and two["preset"] == "llama"
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=RTOL)
