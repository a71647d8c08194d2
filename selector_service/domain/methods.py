"""Selection methods over a scored pool: pure functions of the scores, embeddings and parameters.

Methods give an order over the candidate windows; diversity then takes the budget from that order:

- ``salt_ds``: selectable windows (SALT_DS not None) by descending SALT_DS, ties by window hash.
- ``loss_band``: windows whose mean-loss quantile lies in [band_lo, band_hi], in a seeded random order.
  A window's quantile is its rank r (by mean loss, ties by hash) over r / (N - 1) in the whole pool.
- ``random``: every window, in a seeded random order.
- ``reducible_loss``, ``difference``, ``conditional``: two models' mean losses compared (``pair_methods``).

- ``none``: the first ``budget`` windows of the order.
- ``kmeans``: k-means (faiss) over the L2-normalised embeddings of the candidates; the budget is spread
  over the clusters in proportion to their sizes (largest remainder, capped by size, leftovers passed
  on), and each cluster gives its first windows in the method's order.
- ``dedup``: greedy in the method's order, skipping a window whose cosine similarity to one already
  kept is >= ``dedup_threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import faiss
import numpy as np

from selector_service.domain.pair_methods import pair_order
from selector_service.domain.ties import hash_keys
from shared.selection import METHOD_ROLES, Diversity, SelectionMethod

Method = SelectionMethod


class SelectionError(ValueError):
    """The parameters cannot give a selection of the asked size (answered as 422)."""


@dataclass(frozen=True)
class SelectionParams:
    method: Method
    budget: int
    diversity: Diversity = "none"
    seed: int = 0
    band_lo: float = 0.3
    band_hi: float = 0.9
    n_clusters: int | None = None
    """None: min(16, candidates)."""
    dedup_threshold: float = 0.95


def select(hashes: list[str], mean_loss: np.ndarray, salt_ds: np.ndarray, embeddings: np.ndarray,
           p: SelectionParams, losses: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Positions (ascending) of the chosen windows.

    Args:
        hashes: (N,) window hashes (the deterministic tie-break).
        mean_loss: (N,) mean SLM loss per window.
        salt_ds: (N,) SALT_DS scores, NaN where the window is not selectable.
        embeddings: (N, C) embeddings (any float dtype).
        p: method, budget and their parameters.
        losses: two-model methods only: (N,) mean loss per window of each of the method's roles
            (``shared.selection.METHOD_ROLES``), NaN where a model has not scored the window.

    Raises:
        SelectionError: a budget over the pool or over the candidates left, or bad parameters.
    """
    n = len(hashes)
    if p.budget < 1:
        raise SelectionError("the budget must be at least 1 window")
    if p.budget > n:
        raise SelectionError(f"budget of {p.budget} windows is over the pool's {n} windows")
    if p.method in METHOD_ROLES:
        roles = METHOD_ROLES[p.method]
        if losses is None or any(r not in losses for r in roles):
            raise SelectionError(f"method {p.method} needs the mean losses of models {roles[0]} and {roles[1]}")
        order = pair_order(p.method, hashes, losses, p.seed)
    else:
        order = method_order(hashes, np.asarray(mean_loss, dtype=np.float64),
                             np.asarray(salt_ds, dtype=np.float64), p)
    if p.budget > len(order):
        raise SelectionError(f"budget of {p.budget} windows is over the {len(order)} candidates of method {p.method}")
    if p.diversity == "none":
        chosen = order[: p.budget]
    elif p.diversity == "kmeans":
        chosen = kmeans_pick(normalized(embeddings[order]), p.budget, p.n_clusters, p.seed)
        chosen = order[chosen]
    else:
        chosen = order[dedup_pick(normalized(embeddings[order]), p.budget, p.dedup_threshold)]
    return np.sort(np.asarray(chosen, dtype=np.int64))


def method_order(hashes: list[str], mean_loss: np.ndarray, salt_ds: np.ndarray, p: SelectionParams) -> np.ndarray:
    """Candidate positions in the method's order of preference."""
    n = len(hashes)
    low, high = hash_keys(hashes)
    if p.method == "salt_ds":
        ok = np.flatnonzero(~np.isnan(salt_ds))
        return ok[np.lexsort((low[ok], high[ok], -salt_ds[ok]))]
    rng = np.random.default_rng(p.seed)
    if p.method == "random":
        return rng.permutation(n)
    if not 0.0 <= p.band_lo <= p.band_hi <= 1.0:
        raise SelectionError("loss band needs 0 <= band_lo <= band_hi <= 1")
    ranks = np.empty(n, dtype=np.float64)
    ranks[np.lexsort((low, high, mean_loss))] = np.arange(n)
    q = ranks / (n - 1) if n > 1 else np.zeros(n)
    band = np.flatnonzero((q >= p.band_lo) & (q <= p.band_hi))
    return band[rng.permutation(len(band))]


def normalized(x: np.ndarray) -> np.ndarray:
    """(N, C) float32 rows of unit L2 norm (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0))


def cluster_quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Budget per cluster in proportion to size: largest remainder, capped by size, leftovers passed on."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    exact = budget * sizes / total
    quota = np.minimum(np.floor(exact).astype(np.int64), sizes)
    remainder = exact - np.floor(exact)
    # Ties between equal remainders go to the larger cluster, then the lower cluster id.
    by_remainder = np.lexsort((np.arange(len(sizes)), -sizes, -remainder))
    while quota.sum() < budget:
        progressed = False
        for c in by_remainder:
            if quota.sum() == budget:
                break
            if quota[c] < sizes[c]:
                quota[c] += 1
                progressed = True
        if not progressed:
            break
    return quota


def kmeans_pick(x: np.ndarray, budget: int, n_clusters: int | None, seed: int) -> np.ndarray:
    """Positions into ``x`` (rows in the method's order): the budget spread over k-means clusters."""
    n = len(x)
    k = min(16, n) if n_clusters is None else n_clusters
    if not 1 <= k <= n:
        raise SelectionError(f"n_clusters must be in [1, {n}] (the number of candidates)")
    labels = kmeans_labels(x, k, seed)
    sizes = np.bincount(labels, minlength=k)
    quota = cluster_quotas(sizes, budget)
    taken = np.zeros(k, dtype=np.int64)
    out = []
    for i, c in enumerate(labels):  # rows are in the method's order: each cluster gives its first ones
        if taken[c] < quota[c]:
            taken[c] += 1
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def kmeans_labels(x: np.ndarray, k: int, seed: int, niter: int = 20) -> np.ndarray:
    """(N,) cluster of each row: faiss k-means started from seeded k-means++ centroids."""
    n, d = x.shape
    rng = np.random.default_rng(seed)
    centroids = np.empty((k, d), dtype=np.float32)
    centroids[0] = x[rng.integers(n)]
    dist = ((x - centroids[0]) ** 2).sum(1)
    for j in range(1, k):
        total = float(dist.sum())
        i = int(rng.choice(n, p=dist / total)) if total > 0 else int(rng.integers(n))
        centroids[j] = x[i]
        dist = np.minimum(dist, ((x - centroids[j]) ** 2).sum(1))
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(x, init_centroids=centroids)
    _, labels = km.index.search(x, 1)
    return labels[:, 0].astype(np.int64)


def dedup_pick(x: np.ndarray, budget: int, threshold: float, block: int = 256) -> np.ndarray:
    """Positions into ``x`` (unit rows in the method's order) kept by greedy near-duplicate removal."""
    index = faiss.IndexFlatIP(x.shape[1])
    kept: list[int] = []
    for start in range(0, len(x), block):
        xb = x[start : start + block]
        if index.ntotal:
            near, _ = index.search(xb, 1)
            fresh = near[:, 0] < threshold
        else:
            fresh = np.ones(len(xb), dtype=bool)
        gram = xb @ xb.T
        kept_here: list[int] = []
        for i in np.flatnonzero(fresh):
            if kept_here and gram[i, kept_here].max() >= threshold:
                continue
            kept_here.append(int(i))
            if len(kept) + len(kept_here) == budget:
                break
        if kept_here:
            index.add(xb[kept_here])
            kept.extend(start + i for i in kept_here)
        if len(kept) == budget:
            return np.asarray(kept, dtype=np.int64)
    raise SelectionError(
        f"only {len(kept)} windows are left after removing near-duplicates (cosine >= {threshold}); "
        f"ask for fewer or raise dedup_threshold"
    )
