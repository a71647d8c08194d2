"""Data order: which windows each micro-batch holds, as a pure function of (seed, step, micro)."""

from __future__ import annotations

import threading

import numpy as np


def batch_indices(step: int, micro: int, *, n: int, batch_size: int, grad_accum: int, seed: int) -> np.ndarray:
    """Window indices of one micro-batch: a pure function of (seed, step, micro), so resume is exact.

    Samples are drawn epoch by epoch from a seeded permutation of the ``n`` training windows.
    """
    first = (step * grad_accum + micro) * batch_size
    out = np.empty(batch_size, dtype=np.int64)
    for j, g in enumerate(range(first, first + batch_size)):
        epoch, pos = divmod(g, n)
        out[j] = _permutation(seed, epoch, n)[pos]
    return out


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}
_PERM_LOCK = threading.Lock()


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    # The training loop and the label prefetcher ask from two threads: the cache is read and trimmed under a lock.
    key = (seed, epoch, n)
    with _PERM_LOCK:
        perm = _PERM_CACHE.get(key)
        if perm is None:
            if len(_PERM_CACHE) > 4:
                _PERM_CACHE.clear()
            perm = _PERM_CACHE[key] = np.random.default_rng([seed, epoch]).permutation(n)
    return perm
