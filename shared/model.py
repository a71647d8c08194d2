"""A GPT decoder, shared by the SLM (teacher, served) and the LLM (student, trained).

One self-contained file in the spirit of nanoGPT's model.py: a config dataclass, named presets,
pre-norm blocks, ``scaled_dot_product_attention`` and tied input/output embeddings.

Shapes: B = batch, T = sequence length, C = n_embd, V = vocab_size, H = n_head, D = C // H.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

# Architecture presets. Vocabulary and context are data properties and are filled in when a model is
# built for a dataset (see ``GPTConfig.from_preset``).
PRESETS: dict[str, dict[str, int]] = {
    # For tests and smoke runs: trains in seconds on a CPU.
    "slm-tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64},
    "llm-tiny": {"n_layer": 2, "n_head": 4, "n_embd": 128},
    # The demo's pair on a laptop CPU: the SLM is about half the LLM's non-embedding size, as in the paper.
    "slm": {"n_layer": 3, "n_head": 4, "n_embd": 192},
    "llm": {"n_layer": 4, "n_head": 4, "n_embd": 256},
    # GPU-sized pair (~40M / ~110M parameters at vocab 8192).
    "slm-mid": {"n_layer": 6, "n_head": 8, "n_embd": 512},
    "llm-mid": {"n_layer": 12, "n_head": 12, "n_embd": 768},
}


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of a GPT decoder."""

    vocab_size: int = 8192
    """Number of token ids the embedding holds; must cover the tokenizer's vocabulary."""
    block_size: int = 256
    """Longest sequence (context) the model accepts."""
    n_layer: int = 4
    """Number of transformer blocks."""
    n_head: int = 4
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 256
    """Width of the residual stream."""
    dropout: float = 0.0
    """Dropout on attention and MLP outputs (0 keeps training deterministic and is the default)."""
    bias: bool = False
    """Biases in linear layers and LayerNorms."""
    preset: str = "custom"
    """Name of the preset this config came from (informational)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) <= 0:
                raise ValueError(f"GPTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_preset(cls, name: str, *, vocab_size: int, block_size: int, **overrides: Any) -> GPTConfig:
        """Build a config from a named preset for a given vocabulary and context length."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(vocab_size=vocab_size, block_size=block_size, preset=name, **{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {sorted(unknown)}")
        return cls(**data)

    def with_(self, **changes: Any) -> GPTConfig:
        return replace(self, **changes)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class GPT(nn.Module):
    """Decoder-only transformer with learned positions and tied embeddings."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Tied weights: the output projection is the token embedding (fewer parameters, better small models).
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count; tied weights counted once. ``non_embedding`` leaves out wte and wpe."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalized hidden states.

        Args:
            idx: token ids, (B, T) int64, T <= block_size.

        Returns:
            (B, T, C) hidden states after the final LayerNorm.
        """
        _, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(f"sequence length {T} exceeds the model's context {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, T, C)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) hidden states -> (B, T, V) logits."""
        return self.lm_head(hidden)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits.

        Args:
            idx: token ids, (B, T) int64.

        Returns:
            logits, (B, T, V).
        """
        return self.lm_head(self.hidden(idx))  # (B, T, V)

    def flops_per_token(self) -> int:
        """Training FLOPs per token by the usual 6 * parameters estimate (attention scores left out)."""
        return 6 * self.num_params()


def preset_summary(vocab_size: int = 8192, block_size: int = 256) -> list[tuple[str, int, int]]:
    """(name, total parameters, non-embedding parameters) for every preset."""
    rows = []
    for name in PRESETS:
        with torch.device("meta"):
            model = GPT(GPTConfig.from_preset(name, vocab_size=vocab_size, block_size=block_size))
        rows.append((name, model.num_params(), model.num_params(non_embedding=True)))
    return rows
