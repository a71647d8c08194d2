"""Run checkpoints: the model folder (safetensors) plus the trainer's state beside it.

``<run>/checkpoint/`` holds the student's model folder (a GPT checkpoint: ``model.safetensors``,
``config.json``, ``tokenizer.json``; or a Hugging Face folder: ``save_pretrained`` and the tokenizer),
loadable by the service, with ``run.json`` (step, mode, model) and ``trainer_state.pt`` (optimizer, step,
RNG states, train config), loaded with ``weights_only=True``. A checkpoint is written into a temporary
folder and swapped in whole, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from shared.errors import SaltError
from trainer.recipe.student import load_student, save_student

STATE = "trainer_state.pt"
CKPT_DIR = "checkpoint"
RUN = "run.json"


def save_checkpoint(
    run_dir: Path, model: nn.Module, tok: Tokenizer, eot: int, optimizer_state: dict[str, Any], *,
    step: int, config: dict[str, Any], extra: dict[str, Any] | None = None,
    weights: dict[str, torch.Tensor] | None = None, optimizer_format: str | None = None,
    kd_end_step: int | None = None,
) -> Path:
    """Write ``run_dir/checkpoint`` atomically; returns its path.

    Args:
        kd_end_step: the step ``--kd-until auto`` ended phase one at, when decided (kept in ``run.json``).
        weights: the model's full state when it is sharded (else the model's own state is written).
        optimizer_format: how ``optimizer_state`` is keyed (None: ``Optimizer.state_dict``'s own form).
    """
    final = run_dir / CKPT_DIR
    tmp = run_dir / f".{CKPT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    about = {"step": step, "mode": config.get("mode"), "preset": config.get("preset")}
    save_student(tmp, model, tok, eot, extra=about, weights=weights)
    run = {**about, "hf_model": config.get("model"), "kd_end_step": kd_end_step}
    (tmp / RUN).write_text(json.dumps(run) + "\n", encoding="utf-8")
    state = {
        "step": step,
        "optimizer": optimizer_state,
        "optimizer_format": optimizer_format,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": config,
        "extra": extra or {},
    }
    torch.save(state, tmp / STATE)
    if final.exists():
        old = run_dir / f".{CKPT_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def load_checkpoint(run_dir: Path, *, device: torch.device) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """Load ``run_dir/checkpoint``: model, tokenizer and trainer state (no pickle of arbitrary objects)."""
    folder = run_dir / CKPT_DIR
    if not (folder / STATE).is_file():
        raise SaltError(f"{run_dir} has no checkpoint to resume from", "run without --resume to start fresh")
    model, tok = load_student(folder, device=device)
    try:
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise SaltError(f"{folder / STATE} is corrupt", "delete the run folder and start again") from e
    return model, tok, state


def saved_step(run_dir: Path) -> int:
    """The step of a run's last checkpoint (``run.json``; ``config.json`` in checkpoints written before it)."""
    folder = run_dir / CKPT_DIR
    try:
        about = folder / RUN if (folder / RUN).is_file() else folder / "config.json"
        return int(json.loads(about.read_text())["step"])
    except (OSError, ValueError, KeyError) as e:
        raise SaltError(f"{run_dir} has no readable checkpoint to resume from", "run without --resume") from e


def saved_kd_end(run_dir: Path) -> int | None:
    """The step ``--kd-until auto`` ended phase one at, as the last checkpoint kept it (None: not decided)."""
    path = run_dir / CKPT_DIR / RUN
    try:
        value = json.loads(path.read_text()).get("kd_end_step") if path.is_file() else None
    except (OSError, ValueError) as e:
        raise SaltError(f"{path} is unreadable", "delete the run folder and start again") from e
    return int(value) if value is not None else None
