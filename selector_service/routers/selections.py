"""Selections: a budget of a fully scored pool's windows, chosen by a method and a diversity rule, stored."""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from selector_service import pool_store as ps
from selector_service.deps import SelectorDep
from selector_service.errors import ApiError
from selector_service.pool_schemas import SelectionCreate, SelectionFull, SelectionOut
from selector_service.routers.pools import pool_or_404
from selector_service.selection import SelectionError, SelectionParams, select
from selector_service.selector import Selector
from selector_service.store import Store
from shared.softlabels import BlobError, unpack_scores

router = APIRouter(prefix="/v1", tags=["selections"])


def selection_out(row: dict[str, Any]) -> dict[str, Any]:
    fingerprint, _, precision = row["model"].partition(":")
    return {
        "id": row["id"], "pool_id": row["pool_id"], "method": row["method"], "count": row["count"],
        "params": json.loads(row["params"]), "model_fingerprint": fingerprint, "precision": precision,
        "dataset_fingerprint": row["dataset_fingerprint"], "tokenizer_hash": row["tokenizer_hash"],
        "created_at": row["created_at"],
    }


def params_of(body: SelectionCreate, budget: int) -> dict[str, Any]:
    """The parameters that shape the result (the selection's identity with pool and model)."""
    p: dict[str, Any] = {"method": body.method, "diversity": body.diversity, "count": budget, "seed": body.seed}
    if body.fraction is not None:
        p["fraction"] = body.fraction
    if body.method == "loss_band":
        p |= {"band_lo": body.band_lo, "band_hi": body.band_hi}
    if body.diversity == "kmeans":
        p["n_clusters"] = body.n_clusters
    if body.diversity == "dedup":
        p["dedup_threshold"] = body.dedup_threshold
    return p


def compute(store: Store, pool_id: str, model: str, p: SelectionParams) -> tuple[np.ndarray, list[str]]:
    """Pool indices (ascending) and hashes of the chosen windows."""
    rows = ps.pool_score_rows(store, pool_id=pool_id, model=model)
    try:
        scores = [unpack_scores(blob, ck, h) for _, h, blob, ck in rows]
    except BlobError as e:
        raise ApiError(409, "damaged_scores", "a score row of the pool is damaged; ask /v1/scores for its "
                       "windows to recompute it, then retry") from e
    hashes = [h for _, h, _, _ in rows]
    indices = np.array([i for i, _, _, _ in rows], dtype=np.int64)
    mean_loss = np.array([s.mean_loss for s in scores], dtype=np.float64)
    salt_ds = np.array([np.nan if s.salt_ds is None else s.salt_ds for s in scores], dtype=np.float64)
    emb = np.stack([s.embedding for s in scores]).astype(np.float32)
    chosen = select(hashes, mean_loss, salt_ds, emb, p)
    return indices[chosen], [hashes[i] for i in chosen]


@router.post("/selections", response_model=SelectionOut)
async def create_selection(body: SelectionCreate, selector: SelectorDep) -> dict[str, Any]:
    """Choose and store a selection (the same parameters on the same pool and model give the same one)."""
    if (body.count is None) == (body.fraction is None):
        raise ApiError(422, "invalid_budget", "give exactly one of 'count' or 'fraction'")
    if body.band_lo > body.band_hi:
        raise ApiError(422, "invalid_request", "band_lo must not exceed band_hi")
    pool = await pool_or_404(selector, body.pool_id)
    model = selector.engine.model_key
    if not pool["sealed"]:
        raise ApiError(409, "pool_not_sealed", f"pool {body.pool_id} is not sealed; upload its windows and seal it")
    count = pool["count"]
    scored = await run_in_threadpool(ps.scored_count, selector.store, pool_id=body.pool_id, model=model)
    if scored < count:
        raise ApiError(409, "pool_not_scored", f"{scored} of the pool's {count} windows are scored by the served "
                       "model; run a scoring job (POST /v1/jobs) and wait for it to finish")
    budget = body.count if body.count is not None else round(body.fraction * count)  # type: ignore[operator]
    if budget < 1:
        raise ApiError(422, "budget_too_small", f"fraction {body.fraction} of {count} windows is under one window")
    if budget > count:
        raise ApiError(422, "budget_too_large", f"budget of {budget} windows is over the pool's {count} windows")
    params = params_of(body, budget)
    sid = ps.selection_id_of(body.pool_id, model, params)
    row = await run_in_threadpool(ps.get_selection, selector.store, selection_id=sid)
    if row is None:
        p = SelectionParams(method=body.method, budget=budget, diversity=body.diversity, seed=body.seed,
                            band_lo=body.band_lo, band_hi=body.band_hi, n_clusters=body.n_clusters,
                            dedup_threshold=body.dedup_threshold)
        try:
            indices, hashes = await run_in_threadpool(compute, selector.store, body.pool_id, model, p)
        except SelectionError as e:
            raise ApiError(422, "selection_impossible", str(e)) from e
        row = await run_in_threadpool(ps.put_selection, selector.store, selection_id=sid, pool=pool, model=model,
                                      method=body.method, params=params, indices=indices, hashes=hashes)
    return selection_out(row)


@router.get("/selections/{selection_id}", response_model=SelectionFull)
async def get_selection(selection_id: Annotated[str, PathParam(max_length=64)],
                        selector: SelectorDep) -> dict[str, Any]:
    """The selection's record with its pool indices (ascending) and their window hashes."""
    row = await load_selection(selector, selection_id)
    try:
        indices, hashes = ps.unpack_selection(bytes(row["blob"]), row["checksum"], row["count"])
    except BlobError as e:
        raise ApiError(409, "damaged_selection", "the stored selection is damaged (checksum or length)") from e
    return selection_out(row) | {"indices": indices, "hashes": hashes}


async def load_selection(selector: Selector, selection_id: str) -> dict[str, Any]:
    row = await run_in_threadpool(ps.get_selection, selector.store, selection_id=selection_id)
    if row is None:
        raise ApiError(404, "selection_not_found", f"no selection with id {selection_id!r}")
    return row
