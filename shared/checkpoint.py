"""Model checkpoints: a folder with ``model.safetensors``, ``config.json`` and ``tokenizer.json``.

Weights load without pickle. A model's fingerprint (hash of its weights file and tokenizer) is
carried by every cached row, so a changed model can never serve stale labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from shared.errors import SaltError
from shared.hashing import bytes_hash, file_hash
from shared.model import GPT, GPTConfig
from shared.tokenizer import load_tokenizer, tokenizer_hash

CKPT_FORMAT = "salt-ckpt-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
TIED = "lm_head.weight"  # tied to wte.weight; stored once


def save_model(folder: str | Path, model: GPT, tok: Tokenizer, *, extra: dict[str, Any] | None = None,
               state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the model files into ``folder`` (created if needed).

    The caller makes the folder atomic (the trainer writes into a temporary folder and renames it).

    Args:
        state: the model's full parameters when they are not all in ``model`` (sharded); default its own.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = model.module if hasattr(model, "module") else model
    full = raw.state_dict() if state is None else state
    state = {k: v.detach().to("cpu").contiguous() for k, v in full.items() if k != TIED}
    save_file(state, str(folder / WEIGHTS), metadata={"format": CKPT_FORMAT})
    (folder / TOKENIZER).write_text(tok.to_str(), encoding="utf-8")
    config = {
        "format": CKPT_FORMAT,
        "model": raw.config.to_dict(),
        "tokenizer_hash": tokenizer_hash(tok),
        "num_params": raw.num_params(),
        **(extra or {}),
    }
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def read_config(folder: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, with clear errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SaltError(f"checkpoint folder not found: {folder}", "pass the folder written by `salt train`")
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (folder / name).is_file():
            raise SaltError(f"checkpoint {folder} is missing {name}", "re-save the checkpoint or pick another one")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        GPTConfig.from_dict(config["model"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise SaltError(f"checkpoint {folder} has a corrupt {CONFIG}", "re-save the checkpoint") from e
    if config.get("format") != CKPT_FORMAT:
        raise SaltError(f"checkpoint {folder} has format {config.get('format')!r}", f"expected {CKPT_FORMAT}")
    return config


def load_model(
    folder: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load a checkpoint folder.

    Returns:
        (model in eval mode on ``device``, tokenizer, parsed config.json)
    """
    folder = Path(folder)
    config = read_config(folder)
    tok = load_tokenizer(folder / TOKENIZER)
    if tokenizer_hash(tok) != config.get("tokenizer_hash"):
        raise SaltError(f"checkpoint {folder}: tokenizer.json does not match config.json", "re-save the checkpoint")
    cfg = GPTConfig.from_dict(config["model"])
    if tok.get_vocab_size() > cfg.vocab_size:
        raise SaltError(f"checkpoint {folder}: tokenizer has more ids than the model's vocabulary",
                        "re-save the checkpoint")
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise SaltError(f"checkpoint {folder} has a corrupt {WEIGHTS}", "re-save the checkpoint") from e
    model = GPT(cfg)
    state[TIED] = state.get("wte.weight", torch.empty(0))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SaltError(f"checkpoint {folder}: weights do not match config.json", "re-save the checkpoint") from e
    return model.to(device).eval(), tok, config


def model_fingerprint(folder: str | Path) -> str:
    """Identity of a model: hash of its weights file and its tokenizer."""
    folder = Path(folder)
    config = read_config(folder)
    return bytes_hash("model", file_hash(folder / WEIGHTS), str(config.get("tokenizer_hash")))
