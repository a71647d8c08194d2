"""Sampled soft labels: N draws per position from the teacher's distribution, kept as unique ids and counts.

Top-k labels are biased (the kept mass is renormalised by the student's buckets and the tail's shape is
lost); N draws give an unbiased estimate of full distillation: ``E[c_i / N] = p_i``, so the loss
``-sum_i (c_i / N) log q(i)`` has the full cross-entropy as its expectation.

The draws are a pure function of (window hash, position, draw index): uniforms from a counter-based
hash (splitmix64), turned into ids by the inverse CDF of ``softmax(logits / T)`` (float32 probabilities,
float64 cumulative sums). The same window always gets the same labels, whatever batch it was computed in.

Shapes: B = windows, L = predicted positions, V = vocabulary, W = unique ids kept per position (<= N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

MAX_DRAWS = 255
"""The most draws per position (a count must fit in a byte)."""
DEFAULT_DRAWS = 64
"""Draws per position when a sample request does not say."""
LabelKind = Literal["topk", "sample"]
"""Label kinds: top-k ids with log-probs and a tail, or sampled ids with counts."""
LABEL_KINDS: tuple[str, ...] = get_args(LabelKind)

_CHUNK_ELEMENTS = 1 << 22
_BLOCK = 64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@dataclass
class SampledLabels:
    """Sampled soft labels for a batch of windows.

    Attributes:
        ids: (B, L, W) int64 unique drawn ids, most drawn first (ties: smaller id first); 0 where padding.
        counts: (B, L, W) int64 times each id was drawn; 0 marks padding. Each position's counts sum to
            ``draws`` (positions past a window's length: 0).
        lengths: (B,) int64 predicted positions per window.
        hashes: window hashes in order (empty when unknown).
        draws: N, draws per position.
        temperature: temperature of the distribution drawn from.
    """

    ids: torch.Tensor
    counts: torch.Tensor
    lengths: torch.Tensor
    hashes: list[str]
    draws: int
    temperature: float


def seed_of(window_hash: str) -> int:
    """The 64-bit draw seed of a window: the first 8 bytes of its hash, little-endian."""
    return int.from_bytes(bytes.fromhex(window_hash)[:8], "little")


def draw_uniforms(seeds: np.ndarray, positions: int, draws: int) -> np.ndarray:
    """Uniforms in [0, 1) for each (window, position, draw): splitmix64 of ``seed + counter * golden``.

    Args:
        seeds: (B,) uint64 window seeds (``seed_of``).
        positions: L; draws: N.

    Returns:
        (B, L, N) float64; entry (b, l, j) depends on seeds[b], l and j only.
    """
    counter = (np.arange(positions, dtype=np.uint64)[:, None] * np.uint64(draws)
               + np.arange(draws, dtype=np.uint64)[None, :] + np.uint64(1))  # (L, N)
    x = np.asarray(seeds, dtype=np.uint64)[:, None, None] + counter[None] * _GOLDEN  # (B, L, N), wraps mod 2^64
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def sample_labels(
    logits: torch.Tensor, draws: int, temperature: float, seeds: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """N draws per position from ``softmax(logits / T)``, as unique ids and counts.

    Args:
        logits: (B, L, V) next-token logits.
        draws: N, 1 <= N <= MAX_DRAWS.
        temperature: > 0.
        seeds: (B,) uint64 window seeds (``seed_of`` of each window's hash).

    Returns:
        ids (B, L, N) int64 and counts (B, L, N) int64, most drawn first, padded with count 0 (id 0).
    """
    if not 1 <= draws <= MAX_DRAWS:
        raise ValueError(f"draws must be in [1, {MAX_DRAWS}], got {draws}")
    B, L, V = logits.shape
    flat = logits.reshape(B * L, V)  # (P, V)
    u = torch.from_numpy(draw_uniforms(seeds, L, draws)).to(logits.device).reshape(B * L, draws)  # (P, N)
    drawn = torch.empty((B * L, draws), dtype=torch.long, device=logits.device)  # (P, N)
    rows = max(1, _CHUNK_ELEMENTS // V)  # a few positions at a time: bounded memory at any V
    for i in range(0, B * L, rows):
        drawn[i : i + rows] = inverse_cdf(F.softmax(flat[i : i + rows].float() / temperature, dim=-1), u[i : i + rows])
    return unique_counts(drawn.reshape(B, L, draws), V)


def inverse_cdf(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The id whose CDF interval holds each ``u * sum(p)``, found in two steps: the block of ``_BLOCK`` ids
    (a float64 CDF over float32 block sums), then the id within it (a float64 CDF over that block only). The
    same ids as one float64 CDF over the whole row but where a uniform falls within float32 rounding of a
    block's edge, at a fraction of its cost. An id of zero probability is never returned.

    Args:
        p: (R, V) probabilities (float32; rows need not sum to exactly 1).
        u: (R, N) float64 uniforms in [0, 1).

    Returns:
        (R, N) int64 ids.
    """
    R, V = p.shape
    nb = -(-V // _BLOCK)
    blocks = F.pad(p, (0, nb * _BLOCK - V)).reshape(R, nb, _BLOCK)  # (R, nb, BLOCK), zero-padded
    mass = blocks.sum(-1)  # (R, nb)
    cdf = mass.double().cumsum(-1)  # (R, nb)
    target = u * cdf[:, -1:]  # (R, N)
    last_block = _last_nonzero(mass)  # (R, 1): rounding past the end lands on the last block with mass
    b = torch.minimum(torch.searchsorted(cdf, target, right=True), last_block)  # (R, N)
    rest = target - torch.where(b > 0, cdf.gather(-1, (b - 1).clamp_min(0)), 0.0)  # (R, N): mass into block b
    inner = blocks.gather(1, b.unsqueeze(-1).expand(R, b.shape[1], _BLOCK))  # (R, N, BLOCK)
    within = torch.searchsorted(inner.double().cumsum(-1), rest.unsqueeze(-1), right=True).squeeze(-1)  # (R, N)
    over = within >= _BLOCK  # rounding past the block's end: its last id with mass
    if over.any():
        within[over] = _last_nonzero(inner[over]).squeeze(-1)
    return b * _BLOCK + within


def _last_nonzero(x: torch.Tensor) -> torch.Tensor:
    """(..., 1) index of the last entry > 0 along the last dimension (0 if none)."""
    idx = torch.arange(x.shape[-1], device=x.device)
    return torch.where(x > 0, idx, 0).amax(-1, keepdim=True)


def unique_counts(drawn: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique ids and counts of (B, L, N) drawn ids: (B, L, N) each, most drawn first, count-0 padding."""
    s = drawn.sort(-1).values  # (B, L, N)
    new = torch.ones_like(s, dtype=torch.bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]
    group = new.long().cumsum(-1) - 1  # (B, L, N): index of each draw's unique id
    counts = torch.zeros_like(s).scatter_add_(-1, group, torch.ones_like(s))
    ids = torch.zeros_like(s).scatter_(-1, group, s)
    # Most drawn first, ties by id; padding (count 0) sorts last.
    key = torch.where(counts > 0, -counts * (vocab_size + 1) + ids, torch.full_like(ids, vocab_size + 1))
    order = key.argsort(-1)
    return ids.gather(-1, order), counts.gather(-1, order)


def trim(ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L, N) ids and counts cut to the widest position's unique ids (at least one column)."""
    width = max(1, int((counts > 0).sum(-1).max(initial=0)))
    return ids[:, :width], counts[:, :width]
