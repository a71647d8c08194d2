"""Any model folder as one kind of language model: the project's GPT checkpoints and Hugging Face causal LMs.

Both sides use one interface: ``forward(idx)`` (B, T) -> (B, T, V) logits, ``hidden(idx)`` -> (B, T, C)
final hidden states, ``head(hidden)`` -> logits, over the tokenizer's V ids (output rows past V, padding,
are cut). The kind of a folder is read from its ``config.json``; ``transformers`` is imported only for a
Hugging Face folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from shared.checkpoint import load_model, model_fingerprint, read_config
from shared.errors import SaltError
from shared.tokenizer import eot_id, tokenizer_hash

Kind = Literal["gpt", "hf"]
FIX = "pass a checkpoint folder written by `salt train` or a Hugging Face model folder (config, weights, tokenizer)"


@dataclass
class LoadedLM:
    """A model with the facts the service reports and the trainer checks."""

    model: nn.Module
    """GPT or ``shared.hf.HFCausalLM``: forward, hidden and head as above."""
    tokenizer: Tokenizer
    eot_id: int
    """The end-of-text id documents are joined with."""
    fingerprint: str
    """Hash of the weights, config and tokenizer: every cached row carries it."""
    kind: Kind
    name: str
    """The GPT preset, or the Hugging Face model type."""
    vocab_size: int
    """The tokenizer's ids: the output the model is served and trained with."""
    output_rows: int
    """Rows of the model's output layer (more than vocab_size when it has padding rows)."""
    block_size: int
    """Longest context."""

    @property
    def tokenizer_hash(self) -> str:
        return tokenizer_hash(self.tokenizer)

    @property
    def num_params(self) -> int:
        return int(self.model.num_params())


def kind_of(folder: str | Path) -> Kind:
    """``gpt`` for a checkpoint written here, ``hf`` for a Hugging Face model folder; refuses anything else."""
    from shared.hf import is_hf_folder

    p = Path(folder)
    if not p.exists():
        raise SaltError(f"model folder not found: {p}", FIX)
    if not (p / "config.json").is_file() and not p.is_file():
        raise SaltError(f"{p} is not a model: it has no config.json", FIX)
    if is_hf_folder(p):
        return "hf"
    read_config(p)  # a GPT checkpoint, or one clear error naming what is wrong with the folder
    return "gpt"


def check_folder(folder: str | Path, *, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> Kind:
    """What can be checked without loading the weights (a service's start-up): the folder's kind, config and
    tokenizer, and for Hugging Face its causal-LM type, safetensors weights and (given ``device``) whether
    they fit in its free memory in ``dtype``."""
    kind = kind_of(folder)
    if kind == "hf":
        from shared.hf import check_memory, hf_config, hf_tokenizer, weight_files

        hf_config(folder)
        hf_tokenizer(folder)
        weight_files(Path(folder))
        if device is not None:
            check_memory(Path(folder), dtype, device)
    return kind


def load_lm(folder: str | Path, *, device: torch.device, dtype: torch.dtype = torch.float32) -> LoadedLM:
    """Load a model folder of either kind, in eval mode on ``device`` in ``dtype``."""
    if kind_of(folder) == "hf":
        from shared.hf import hf_fingerprint, load_hf

        lm, tok, eot = load_hf(folder, device=device, dtype=dtype)
        return LoadedLM(lm, tok, eot, hf_fingerprint(folder), "hf", str(lm.config.model_type),
                        lm.vocab_size, lm.output_rows, lm.block_size)
    model, tok, _ = load_model(folder, device=device)
    model = model.to(dtype).eval()
    cfg = model.config
    vocab = tok.get_vocab_size()
    if vocab > cfg.vocab_size:
        raise SaltError(f"checkpoint {folder}: its tokenizer has more ids than its model", "re-save the checkpoint")
    return LoadedLM(model, tok, eot_id(tok), model_fingerprint(folder), "gpt", cfg.preset, vocab, cfg.vocab_size,
                    cfg.block_size)
