"""The model a run trains (the student): a GPT preset, or any Hugging Face causal LM.

A Hugging Face student comes from a ``config.json`` (random init, seeded) or from a model folder (its
weights, continued). Its tokenizer, when the folder has one, must be the dataset's; an output layer wider
than the dataset's vocabulary (padding rows) is trained on the dataset's ids only. Its checkpoints are
Hugging Face folders (``save_pretrained`` and the tokenizer), so ``transformers`` loads them as they are
and the selector service can serve one as the next run's SLM.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from shared.checkpoint import load_model, save_model
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from trainer.config import TrainConfig

_CPU = torch.device("cpu")
"""Where a student is built or loaded before it moves to its device."""


def new_student(cfg: TrainConfig, ds: PackedDataset) -> nn.Module:
    """A fresh student for the dataset (seed torch first: initialisation draws from its generator)."""
    if cfg.arch.model is None:
        gcfg = GPTConfig.from_preset(cfg.arch.preset, vocab_size=ds.vocab_size,
                                     block_size=cfg.arch.block_size or ds.seq_len)
        return GPT(gcfg)
    from shared.hf import load_hf, new_hf

    path = Path(cfg.arch.model)
    if path.is_dir() and any(path.glob("*.safetensors")):
        lm, tok, _ = load_hf(path, device=_CPU)
        ds.check_tokenizer(tok, what=f"the tokenizer of {path}")
        lm.train()
    else:
        lm = new_hf(path, ds.vocab_size)
    if lm.block_size < ds.seq_len:
        raise SaltError(f"{path}: the model's context ({lm.block_size}) is shorter than the dataset's windows "
                        f"({ds.seq_len})", "prepare the data with a smaller --seq-len")
    return lm


def save_student(folder: Path, model: nn.Module, tok: Tokenizer, eot: int, *, extra: dict[str, object],
                 weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write the student's model folder (a GPT checkpoint, or a Hugging Face folder).

    Args:
        weights: the full state of a sharded student (gathered); None writes the model's own state.
    """
    if isinstance(model, GPT):
        save_model(folder, model, tok, extra=extra, state=weights)
        return
    from shared.hf import HFCausalLM, save_hf

    assert isinstance(model, HFCausalLM)
    save_hf(folder, model, tok, eot, state=weights)


def load_student(folder: Path, *, device: torch.device) -> tuple[nn.Module, Tokenizer]:
    """A checkpoint's student (in training mode) and tokenizer, whichever kind it is."""
    from shared.lm import kind_of

    if kind_of(folder) == "hf":
        from shared.hf import load_hf

        lm, tok, _ = load_hf(folder, device=_CPU)
        return lm.to(device).train(), tok
    model, tok, _ = load_model(folder, device=device)
    return model, tok
