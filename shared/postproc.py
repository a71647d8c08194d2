"""Row statistics of CPU float32 logits from the optional C extension ``shared._postproc``.

One call reads each row of logits twice (top-k, then the exponential sums per temperature) instead of the
half-dozen full-vocabulary torch operations of the reference path; ``shared.labels.labels_and_scores``
builds labels and scores from these figures when the extension is built (``available()``) and the logits
are on the CPU. Rows are split over torch's OpenMP threads (torch is imported first, so the extension shares
its libgomp); the GIL is released meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

try:
    from shared import _postproc  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the torch path runs instead
    _postproc = None


def available() -> bool:
    """Whether the C extension was built (``pip install`` with a C compiler present)."""
    return _postproc is not None


@dataclass
class RowStats:
    """Per row of (N, V) logits x; every sum is over exp(a (x - max)) at inverse temperature a.

    Attributes:
        top_val: (N, k) float32 the k largest logits, largest first (equal logits: lower id first).
        top_idx: (N, k) int64 their ids.
        max: (N,) float32 the largest logit.
        sum: (N, n_t) float64 the sum over the whole row, per temperature.
        tail: (N, n_t) float64 the sum over the ids outside the top-k (positive terms only).
        dot: (N,) float64 sum of exp(x - max) (x - max) at temperature 1 (0 if 1 is not among the temperatures).
    """

    top_val: torch.Tensor
    top_idx: torch.Tensor
    max: torch.Tensor
    sum: torch.Tensor
    tail: torch.Tensor
    dot: torch.Tensor


def row_stats(logits: torch.Tensor, k: int, temperatures: list[float]) -> RowStats:
    """The figures of ``RowStats`` for (N, V) float32 CPU logits, k <= V, temperatures > 0.

    Raises:
        RuntimeError: the extension is not built.
        ValueError: wrong dtype, device, shape, k or temperature.
    """
    if _postproc is None:
        raise RuntimeError("shared._postproc is not built (reinstall the package with a C compiler present)")
    if logits.dtype != torch.float32 or logits.device.type != "cpu" or logits.dim() != 2:
        raise ValueError(f"need (N, V) float32 CPU logits, got {tuple(logits.shape)} {logits.dtype} {logits.device}")
    N, V = logits.shape
    if not 1 <= k <= V or not temperatures or min(temperatures) <= 0:
        raise ValueError(f"need 1 <= k <= {V} and temperatures > 0, got k={k}, temperatures={temperatures}")
    x = logits.contiguous()
    inv_t = torch.tensor([1.0 / t for t in temperatures], dtype=torch.float64)
    n_t = len(temperatures)
    out = RowStats(
        top_val=torch.empty(N, k), top_idx=torch.empty(N, k, dtype=torch.int64), max=torch.empty(N),
        sum=torch.empty(N, n_t, dtype=torch.float64), tail=torch.empty(N, n_t, dtype=torch.float64),
        dot=torch.zeros(N, dtype=torch.float64),
    )

    _postproc.row_stats(
        x.data_ptr(), N, V, k, inv_t.data_ptr(), n_t, out.top_val.data_ptr(), out.top_idx.data_ptr(),
        out.max.data_ptr(), out.sum.data_ptr(), out.tail.data_ptr(), out.dot.data_ptr(),
    )
    return out
