"""Soft labels and window scores: the math both sides share.

The selector service computes them (``labels_and_scores``), the trainer reads them (``SoftLabels``).

Shapes: B = windows, L = predicted positions per window, V = vocabulary, k = kept ids, C = n_embd.

Soft labels at temperature T, per predicted position: the teacher's top-k ids (most probable first),
their log-probs ``log_softmax(logits / T)`` and the tail, the log of the mass outside the top-k. An
empty tail (k = V) would be ``-inf``; it is stored as ``TAIL_FLOOR`` (-1e4, finite in float16, and
``exp(-1e4)`` is exactly 0 in every float type), and every value at or below it means "no mass".

The wire format is in ``shared.wire``; the cache's storage format is the service's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shared import postproc

TAIL_FLOOR = -1e4
"""Stored value of an empty tail (and the lowest log-prob kept); float16-safe."""
SALT_DS_TOPK = 10
"""A position counts toward SALT_DS when its true token is in the SLM's top-10."""
MAX_K = 256
"""The most ids a top-k label set keeps per position (the service's hard bound; its setting may be lower)."""


@dataclass
class SoftLabels:
    """Top-k soft labels for a batch of windows.

    Attributes:
        ids: (B, L, k) int64 token ids, most probable first.
        logprobs: (B, L, k) float32 log-probs of those ids.
        tail: (B, L) float32 log of the remaining mass (``<= TAIL_FLOOR`` means none).
        lengths: (B,) int64 predicted positions per window (positions past it are padding).
        hashes: window hashes in order (empty when unknown).
        k: kept ids per position.
        temperature: temperature the log-probs were computed at.
    """

    ids: torch.Tensor
    logprobs: torch.Tensor
    tail: torch.Tensor
    lengths: torch.Tensor
    hashes: list[str]
    k: int
    temperature: float


@dataclass
class WindowScore:
    """Learnability figures of one window (all at temperature 1)."""

    hash: str
    n_tokens: int
    mean_loss: float
    median_loss: float
    top1_acc: float
    mean_entropy: float
    salt_ds: float | None
    """Median loss over positions whose true token is in the top-10; None: not selectable."""
    embedding: np.ndarray
    """(C,) float16 mean of the last hidden state over the window's positions."""


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id of a vocabulary."""
    if vocab_size <= 1 << 8:
        return np.dtype("u1")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    return np.dtype("<u4")



def labels_and_scores(
    logits: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor, label_params: list[tuple[int, float]],
    *, native: bool | None = None,
) -> tuple[dict[str, np.ndarray], dict[tuple[int, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Scores and every wanted label set from one forward pass's outputs, sharing the full-vocabulary work.

    Equal (within float rounding) to ``window_scores`` and ``topk_soft_labels``, which are the plain
    references. On the CPU with the C extension built (``shared.postproc``), each row of logits is read
    twice in all (top-k, then the exponential sums per temperature); otherwise torch computes each
    softmax, exponential and top-k once per temperature. The tail is the sum of the probabilities outside
    the top-k (positive terms only: no cancellation); a tail under float32's smallest normal (about e^-87)
    is reported as ``TAIL_FLOOR``. Equal logits are ordered by lower id first on the C path.

    Args:
        logits: (B, L, V); targets: (B, L) int64; hidden: (B, L, C).
        label_params: (k, temperature) pairs wanted.
        native: True: the C path (an error if it is not built or the logits are not on the CPU); False: the
            torch path; None: the C path where it can run.

    Returns:
        scores as ``window_scores`` gives them, and {(k, T): (ids (B, L, k), logprobs (B, L, k), tail (B, L))}.
    """
    if native is None:
        native = postproc.available() and logits.device.type == "cpu"
    if native:
        return _from_row_stats(logits.float(), targets, hidden, label_params)
    V = logits.shape[-1]
    logits = logits.float()
    labels = {}
    scores: dict[str, np.ndarray] = {}
    for t in sorted({t for _, t in label_params} | {1.0}):
        ks = sorted({k for k, tt in label_params if tt == t})
        logp = F.log_softmax(logits if t == 1.0 else logits / t, dim=-1)  # (B, L, V)
        p = logp.exp()  # (B, L, V)
        kmax = max([*ks, min(SALT_DS_TOPK, V) if t == 1.0 else 1])
        top_lp, top_ids = logp.topk(kmax, dim=-1)  # (B, L, kmax), sorted descending
        if t == 1.0:
            entropy = -(p * logp).sum(-1)  # (B, L); einsum takes a batched matmul here, 3-4x slower on CPU
            loss = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, L)
            top10 = top_ids[..., : min(SALT_DS_TOPK, V)]
            scores = _scores_from(loss.double().cpu().numpy(), entropy.double().cpu().numpy(),
                                  top10.cpu().numpy(), targets.cpu().numpy(), _embedding(hidden))
        done = 0
        for k in ks:  # ascending: the top-k sets are nested, so p is zeroed a slice at a time
            p.scatter_(-1, top_ids[..., done:k], 0.0)
            done = k
            tail = p.sum(-1).log() if k < V else torch.full(p.shape[:-1], float("-inf"), device=p.device)
            labels[(k, t)] = (top_ids[..., :k], top_lp[..., :k].clamp_min(TAIL_FLOOR), tail.clamp_min(TAIL_FLOOR))
    return scores, labels


LOG_FLOAT32_TINY = float(np.log(np.finfo(np.float32).tiny))
"""log of float32's smallest normal (about -87.3): tails under it are reported as ``TAIL_FLOOR``."""


def _from_row_stats(
    logits: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor, label_params: list[tuple[int, float]]
) -> tuple[dict[str, np.ndarray], dict[tuple[int, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """``labels_and_scores`` from the C extension's row statistics.

    From here on the figures are (N, K) at most: numpy, not torch, whose element-wise operations on this
    size wake its thread pool each time (tens of microseconds per operation).
    """
    B, L, V = logits.shape
    x = logits.reshape(B * L, V)  # (N, V)
    temps = sorted({t for _, t in label_params} | {1.0})
    K = max([k for k, _ in label_params] + [min(SALT_DS_TOPK, V)])
    st = postproc.row_stats(x, K, temps)
    top_val, top_idx = st.top_val.numpy(), st.top_idx.numpy()  # (N, K) each
    m, sums, tails = st.max.numpy().astype(np.float64), st.sum.numpy(), st.tail.numpy()  # (N,), (N, n_t) x 2
    log_s = np.log(sums)  # (N, n_t)
    one = temps.index(1.0)
    tgt = targets.reshape(-1).cpu().numpy()  # (N,)
    loss = m + log_s[:, one] - x.numpy()[np.arange(B * L), tgt]  # (N,) log-sum-exp minus the target's logit
    entropy = log_s[:, one] - st.dot.numpy() / sums[:, one]  # (N,)
    top10 = top_idx[:, : min(SALT_DS_TOPK, V)].reshape(B, L, -1)
    scores = _scores_from(loss.reshape(B, L), entropy.reshape(B, L), top10, tgt.reshape(B, L), _embedding(hidden))
    labels = {}
    z_at = {t: (top_val - m[:, None]) / t for t in {t for _, t in label_params}}  # (N, K) float64 per temperature
    for k, t in label_params:
        j = temps.index(t)
        z = z_at[t]  # the log of each top term of the sum
        lp = np.maximum(z[:, :k] - log_s[:, j, None], TAIL_FLOOR).astype(np.float32)  # (N, k)
        tail = np.full(B * L, TAIL_FLOOR, dtype=np.float32)
        if k < V:  # the ids ranked k..K-1 are outside this top-k too
            with np.errstate(divide="ignore"):
                t_lp = np.log(tails[:, j] + np.exp(z[:, k:]).sum(-1)) - log_s[:, j]  # (N,)
            tail = np.where(t_lp < LOG_FLOAT32_TINY, TAIL_FLOOR, t_lp).astype(np.float32)
        labels[(k, t)] = (torch.from_numpy(top_idx[:, :k].reshape(B, L, k)), torch.from_numpy(lp.reshape(B, L, k)),
                          torch.from_numpy(tail.reshape(B, L)))
    return scores, labels


def _embedding(hidden: torch.Tensor) -> np.ndarray:
    """(B, C) float16 mean of the hidden states over each window's positions."""
    return hidden.float().mean(1).to(torch.float16).cpu().numpy()


def _scores_from(loss: np.ndarray, entropy: np.ndarray, top10: np.ndarray, targets: np.ndarray,
                 embedding: np.ndarray) -> dict[str, np.ndarray]:
    """Scores from per-position losses and entropies (B, L) float64, the top-10 ids (B, L, 10) and targets (B, L)."""
    B, L = loss.shape
    in_top10 = (top10 == targets[..., None]).any(-1)  # (B, L)
    return {
        "n_tokens": np.full(B, L, dtype=np.int64),
        "mean_loss": loss.mean(-1),
        "median_loss": _masked_median(loss, np.ones_like(in_top10)),
        "top1_acc": (top10[..., 0] == targets).mean(-1),
        "mean_entropy": entropy.mean(-1),
        "salt_ds": _masked_median(loss, in_top10),
        "embedding": embedding,
    }


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median (mean of the two middle values when even) of each row over masked entries; NaN if none.

    values, mask: (B, L). Returns (B,) float64.
    """
    s = np.sort(np.where(mask, values, np.inf), axis=-1)  # (B, L); masked-out entries last
    n = mask.sum(-1)  # (B,)
    lo = (np.maximum(n - 1, 0) // 2)[:, None]
    hi = np.minimum(n // 2, values.shape[-1] - 1)[:, None]
    med = (np.take_along_axis(s, lo, -1) + np.take_along_axis(s, hi, -1))[:, 0] / 2
    return np.where(n == 0, np.nan, med)
