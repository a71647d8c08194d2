"""Run checkpoints: the model folder (safetensors) plus the trainer's state beside it.

``<run>/checkpoint/`` holds ``model.safetensors``, ``config.json``, ``tokenizer.json`` (the shared
checkpoint format, loadable by the service) and ``trainer_state.pt`` (optimizer, step, RNG states,
train config), loaded with ``weights_only=True``. A checkpoint is written into a temporary folder
and swapped in whole, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from shared.checkpoint import load_model, save_model
from shared.errors import SaltError
from shared.model import GPT

STATE = "trainer_state.pt"
CKPT_DIR = "checkpoint"


def save_checkpoint(
    run_dir: Path, model: GPT, tok: Tokenizer, optimizer: torch.optim.Optimizer, *,
    step: int, config: dict[str, Any], extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/checkpoint`` atomically; returns its path."""
    final = run_dir / CKPT_DIR
    tmp = run_dir / f".{CKPT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(tmp, model, tok, extra={"step": step, "mode": config.get("mode"), "preset": config.get("preset")})
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
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


def load_checkpoint(run_dir: Path, *, device: torch.device) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load ``run_dir/checkpoint``: model, tokenizer and trainer state (no pickle of arbitrary objects)."""
    folder = run_dir / CKPT_DIR
    if not (folder / STATE).is_file():
        raise SaltError(f"{run_dir} has no checkpoint to resume from", "run without --resume to start fresh")
    model, tok, _ = load_model(folder, device=device)
    try:
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise SaltError(f"{folder / STATE} is corrupt", "delete the run folder and start again") from e
    return model, tok, state
