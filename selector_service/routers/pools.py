"""Pools: a dataset's windows registered once (idempotent, resumable uploads), then sealed."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from selector_service import pool_store as ps
from selector_service.deps import SelectorDep, SettingsDep
from selector_service.errors import ApiError
from selector_service.pool_schemas import PoolCreate, PoolOut, SealRequest, UploadOut, WindowsUpload
from selector_service.selector import Selector
from shared.hashing import window_hash

router = APIRouter(prefix="/v1", tags=["pools"])

PoolId = Annotated[str, PathParam(max_length=64)]


def served_tokenizer_hash(selector: Selector) -> str:
    return str(selector.engine.checkpoint_info.get("tokenizer_hash", ""))


async def pool_or_404(selector: Selector, pool_id: str) -> dict[str, Any]:
    pool = await run_in_threadpool(ps.get_pool, selector.store, pool_id=pool_id)
    if pool is None:
        raise ApiError(404, "pool_not_found", f"no pool with id {pool_id!r}")
    return pool


async def pool_out(selector: Selector, pool: dict[str, Any]) -> PoolOut:
    store, pid = selector.store, pool["id"]
    uploaded, top = await run_in_threadpool(ps.upload_state, store, pool_id=pid)
    scored = await run_in_threadpool(ps.scored_count, store, pool_id=pid, model=selector.engine.model_key)
    return PoolOut(
        id=pid, name=pool["name"], dataset_fingerprint=pool["dataset_fingerprint"],
        tokenizer_hash=pool["tokenizer_hash"], window_len=pool["window_len"],
        count=pool["count"] if pool["sealed"] else uploaded, uploaded=uploaded,
        resume_from=uploaded if top == uploaded else 0, sealed=bool(pool["sealed"]), scored=scored,
    )


@router.post("/pools", response_model=PoolOut)
async def create_pool(body: PoolCreate, selector: SelectorDep) -> PoolOut:
    """Register (or get) the pool of (dataset fingerprint, name); its id is a hash of both."""
    served = served_tokenizer_hash(selector)
    if body.tokenizer_hash != served:
        raise ApiError(409, "tokenizer_mismatch",
                       f"the pool's tokenizer hash {body.tokenizer_hash[:12]} is not the served model's "
                       f"{served[:12]}; prepare the dataset with the model's tokenizer or serve a matching model")
    engine = selector.engine
    if body.window_len - 1 > engine.block_size:
        raise ApiError(422, "window_too_long",
                       f"window_len {body.window_len} predicts more than the model's context of {engine.block_size}")
    pool = await run_in_threadpool(
        ps.create_pool, selector.store, name=body.name, dataset_fingerprint=body.dataset_fingerprint,
        tokenizer_hash=body.tokenizer_hash, window_len=body.window_len,
    )
    if pool["window_len"] != body.window_len:
        raise ApiError(409, "pool_conflict", f"pool {pool['id']} exists with window_len {pool['window_len']}")
    return await pool_out(selector, pool)


@router.get("/pools/{pool_id}", response_model=PoolOut)
async def get_pool(pool_id: PoolId, selector: SelectorDep) -> PoolOut:
    """The pool with its upload state and how many of its windows the served model has scored."""
    return await pool_out(selector, await pool_or_404(selector, pool_id))


@router.post("/pools/{pool_id}/windows", response_model=UploadOut)
async def upload_windows(pool_id: PoolId, body: WindowsUpload, selector: SelectorDep,
                         settings: SettingsDep) -> UploadOut:
    """Windows at indices start.. with their hashes; every one is checked before anything is written."""
    pool = await pool_or_404(selector, pool_id)
    if pool["sealed"]:
        raise ApiError(409, "pool_sealed", f"pool {pool_id} is sealed; it takes no more windows")
    n = len(body.windows)
    if n == 0:
        raise ApiError(422, "empty_batch", "the batch holds no windows")
    if n > settings.max_batch_windows:
        raise ApiError(413, "batch_too_large", f"{n} windows is over the limit of {settings.max_batch_windows}")
    if len(body.hashes) != n:
        raise ApiError(422, "invalid_request", f"{len(body.hashes)} hashes for {n} windows")
    if body.start + n > 1 << 31:
        raise ApiError(422, "invalid_request", "window indices must stay below 2**31")
    vocab, wlen = selector.engine.vocab_size, pool["window_len"]
    arrays = []
    for i, (ids, h) in enumerate(zip(body.windows, body.hashes, strict=True)):
        if len(ids) != wlen:
            raise ApiError(422, "wrong_window_len", f"windows[{i}] has {len(ids)} ids; the pool's windows have {wlen}")
        arr = np.asarray(ids, dtype=np.int64)
        if arr.max() >= vocab:
            raise ApiError(422, "token_out_of_vocab", f"windows[{i}] holds a token id outside [0, {vocab})")
        if window_hash(arr) != h:
            raise ApiError(422, "hash_mismatch", f"windows[{i}] does not match hashes[{i}] (index {body.start + i})")
        arrays.append(arr)
    there = await run_in_threadpool(ps.existing_hashes, selector.store, pool_id=pool_id, start=body.start,
                                    stop=body.start + n)
    for idx, h in there.items():
        if body.hashes[idx - body.start] != h:
            raise ApiError(409, "index_conflict", f"pool index {idx} already holds another window")
    await run_in_threadpool(ps.put_windows, selector.store, pool_id=pool_id, start=body.start, hashes=body.hashes,
                            windows=arrays)
    return UploadOut(pool_id=pool_id, start=body.start, received=n)


@router.post("/pools/{pool_id}/seal", response_model=PoolOut)
async def seal_pool(pool_id: PoolId, body: SealRequest, selector: SelectorDep) -> PoolOut:
    """Mark the pool complete once windows 0..count-1, and no others, are uploaded."""
    pool = await pool_or_404(selector, pool_id)
    if pool["sealed"]:
        if pool["count"] != body.count:
            raise ApiError(409, "pool_sealed", f"pool {pool_id} is already sealed with {pool['count']} windows")
        return await pool_out(selector, pool)
    uploaded, top = await run_in_threadpool(ps.upload_state, selector.store, pool_id=pool_id)
    if top > body.count:
        raise ApiError(409, "pool_incomplete", f"pool {pool_id} holds windows at indices >= {body.count}")
    if uploaded != body.count:
        raise ApiError(409, "pool_incomplete",
                       f"{body.count - uploaded} of {body.count} windows are missing; upload them, then seal")
    await run_in_threadpool(ps.seal_pool, selector.store, pool_id=pool_id, count=body.count)
    return await pool_out(selector, await pool_or_404(selector, pool_id))
