"""Selections: a budget of a fully scored pool's windows, chosen by a method and a diversity rule, stored.

A selection's id is a hash of pool, model and the parameters that shape the result, so asking again
returns the stored one. A one-model method uses the served model's scores; a two-model method uses the
mean losses of the two models its request names (any that have scored the whole pool, served here or
not): the selection's ``model`` is then its first role's, its parameters carry both model keys, and
diversity uses the first role's embeddings. Every function runs in a worker thread (it waits on the
database).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from selector_service.domain.errors import DomainError
from selector_service.domain.methods import Diversity, Method, SelectionError, SelectionParams, select
from selector_service.domain.pool_models import check_roles, resolve_models
from selector_service.domain.pools import sealed_pool
from selector_service.store import pool_rows
from selector_service.store.codec import unpack_scores, unpack_selection
from selector_service.store.database import Database
from shared.blobs.labels import BlobError
from shared.labels import WindowScore


def params_of(p: SelectionParams, fraction: float | None) -> dict[str, Any]:
    """The parameters that shape the result (the selection's identity with pool and model)."""
    out: dict[str, Any] = {"method": p.method, "diversity": p.diversity, "count": p.budget, "seed": p.seed}
    if fraction is not None:
        out["fraction"] = fraction
    if p.method == "loss_band":
        out |= {"band_lo": p.band_lo, "band_hi": p.band_hi}
    if p.diversity == "kmeans":
        out["n_clusters"] = p.n_clusters
    if p.diversity == "dedup":
        out["dedup_threshold"] = p.dedup_threshold
    return out


def record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored selection as answered: parameters decoded (the models of a two-model method apart, by role),
    the model key split into fingerprint and precision."""
    fingerprint, _, precision = row["model"].partition(":")
    params = json.loads(row["params"])
    models = params.pop("models", {})
    return {
        "id": row["id"], "pool_id": row["pool_id"], "method": row["method"], "count": row["count"],
        "params": params, "models": models, "model_fingerprint": fingerprint, "precision": precision,
        "dataset_fingerprint": row["dataset_fingerprint"], "tokenizer_hash": row["tokenizer_hash"],
        "created_at": row["created_at"],
    }


def create_selection(database: Database, *, model: str, pool_id: str, method: Method, count: int | None,
                     fraction: float | None, diversity: Diversity, seed: int, band_lo: float, band_hi: float,
                     n_clusters: int | None, dedup_threshold: float,
                     models: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Choose and store a selection of the pool (the same parameters give the same one).

    Args:
        model: the served model's key (the scores of a one-model method).
        models: a two-model method's models, role -> fingerprint (or fingerprint:precision).

    Returns:
        ``record`` of the stored selection.

    Raises:
        DomainError: invalid (budget, band or models), not_found (pool), conflict (pool not sealed, not
            fully scored by a model used, or a damaged score row), or invalid (no selection of that size).
    """
    if (count is None) == (fraction is None):
        raise DomainError("invalid", "invalid_budget", "give exactly one of 'count' or 'fraction'")
    if band_lo > band_hi:
        raise DomainError("invalid", "invalid_request", "band_lo must not exceed band_hi")
    named = check_roles(method, models)
    pool = sealed_pool(database, pool_id=pool_id)
    keys = resolve_models(database, pool, named) if named else {"scorer": model}
    if not named:
        _check_scored(database, pool, model=model)
    budget = _budget(pool, count=count, fraction=fraction)
    p = SelectionParams(method=method, budget=budget, diversity=diversity, seed=seed, band_lo=band_lo,
                        band_hi=band_hi, n_clusters=n_clusters, dedup_threshold=dedup_threshold)
    params = params_of(p, fraction) | ({"models": keys} if named else {})
    owner = next(iter(keys.values()))
    sid = pool_rows.selection_id_of(pool_id, owner, params)
    row = pool_rows.get_selection(database=database, selection_id=sid)
    if row is None:
        try:
            indices, hashes = _compute(database, pool_id, keys, p)
        except SelectionError as e:
            raise DomainError("invalid", "selection_impossible", str(e)) from e
        row = pool_rows.put_selection(database=database, selection_id=sid, pool=pool, model=owner, method=method,
                                      params=params, indices=indices, hashes=hashes)
    return record(row)


def _check_scored(database: Database, pool: dict[str, Any], *, model: str) -> None:
    """Refuse (conflict) until every window of the pool is scored by the served model."""
    size = pool["count"]
    scored = pool_rows.scored_count(database=database, pool_id=pool["id"], model=model)
    if scored < size:
        raise DomainError("conflict", "pool_not_scored", f"{scored} of the pool's {size} windows are scored by the "
                          "served model; run a scoring job (POST /v1/jobs) and wait for it to finish")


def _budget(pool: dict[str, Any], *, count: int | None, fraction: float | None) -> int:
    """Windows to select: ``count``, or ``fraction`` of the pool."""
    size = pool["count"]
    budget = count if count is not None else round(fraction * size)  # type: ignore[operator]
    if budget < 1:
        raise DomainError("invalid", "budget_too_small", f"fraction {fraction} of {size} windows is under one window")
    if budget > size:
        raise DomainError("invalid", "budget_too_large",
                          f"budget of {budget} windows is over the pool's {size} windows")
    return budget


def _compute(database: Database, pool_id: str, keys: Mapping[str, str],
             p: SelectionParams) -> tuple[np.ndarray, list[str]]:
    """Pool indices (ascending) and hashes of the chosen windows; ``keys``: model key by role (the first one's
    scores give the one-model figures and the embeddings)."""
    per_role = {role: _score_rows(database, pool_id, key) for role, key in keys.items()}
    first = next(iter(per_role.values()))
    hashes = [h for _, h, _ in first]
    indices = np.array([i for i, _, _ in first], dtype=np.int64)
    losses = {}
    for role, rows in per_role.items():
        by_index = {i: s.mean_loss for i, _, s in rows}
        losses[role] = np.array([by_index.get(int(i), np.nan) for i in indices], dtype=np.float64)
    scores = [s for _, _, s in first]
    salt_ds = np.array([np.nan if s.salt_ds is None else s.salt_ds for s in scores], dtype=np.float64)
    emb = np.stack([s.embedding for s in scores]).astype(np.float32)
    chosen = select(hashes, losses[next(iter(keys))], salt_ds, emb, p, losses=losses)
    return indices[chosen], [hashes[i] for i in chosen]


def _score_rows(database: Database, pool_id: str, model: str) -> list[tuple[int, str, WindowScore]]:
    """(index, hash, scores) of every window of the pool that ``model`` has scored, by index."""
    rows = pool_rows.pool_score_rows(database=database, pool_id=pool_id, model=model)
    try:
        return [(i, h, unpack_scores(blob, ck, h)) for i, h, blob, ck in rows]
    except BlobError as e:
        raise DomainError("conflict", "damaged_scores", "a score row of the pool is damaged; ask /v1/scores for its "
                          "windows to recompute it, then retry") from e


def find_selection(database: Database, *, selection_id: str) -> dict[str, Any]:
    """``record`` of the stored selection with its pool indices (ascending) and their window hashes."""
    row = pool_rows.get_selection(database=database, selection_id=selection_id)
    if row is None:
        raise DomainError("not_found", "selection_not_found", f"no selection with id {selection_id!r}")
    try:
        indices, hashes = unpack_selection(bytes(row["blob"]), row["checksum"], row["count"])
    except BlobError as e:
        raise DomainError("conflict", "damaged_selection",
                          "the stored selection is damaged (checksum or length)") from e
    return record(row) | {"indices": indices, "hashes": hashes}
