"""Pools: a dataset's windows registered once (idempotent, resumable uploads), then sealed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from selector_service.api.deps import DatabaseDep, SettingsDep, SLMDep
from selector_service.api.pool_schemas import PoolCreate, PoolOut, SealRequest, UploadOut, WindowsUpload
from selector_service.domain import pools

router = APIRouter(prefix="/v1", tags=["pools"])

PoolId = Annotated[str, PathParam(max_length=64)]


@router.post("/pools", response_model=PoolOut)
async def create_pool(body: PoolCreate, database: DatabaseDep, slm: SLMDep) -> dict[str, Any]:
    """Register (or get) the pool of (dataset fingerprint, name); its id is a hash of both."""
    return await run_in_threadpool(pools.create_pool, database, slm, **body.model_dump())


@router.get("/pools/{pool_id}", response_model=PoolOut)
async def get_pool(pool_id: PoolId, database: DatabaseDep, slm: SLMDep) -> dict[str, Any]:
    """The pool with its upload state and how many of its windows the served model has scored."""
    return await run_in_threadpool(pools.describe_pool, database, slm, pool_id=pool_id)


@router.post("/pools/{pool_id}/windows", response_model=UploadOut)
async def upload_windows(pool_id: PoolId, body: WindowsUpload, database: DatabaseDep, slm: SLMDep,
                         settings: SettingsDep) -> UploadOut:
    """Windows at indices start.. with their hashes; every one is checked before anything is written."""
    received = await run_in_threadpool(pools.upload_windows, database, slm, pool_id=pool_id, start=body.start,
                                       hashes=body.hashes, windows=body.windows,
                                       max_batch_windows=settings.max_batch_windows)
    return UploadOut(pool_id=pool_id, start=body.start, received=received)


@router.post("/pools/{pool_id}/seal", response_model=PoolOut)
async def seal_pool(pool_id: PoolId, body: SealRequest, database: DatabaseDep, slm: SLMDep) -> dict[str, Any]:
    """Mark the pool complete once windows 0..count-1, and no others, are uploaded."""
    return await run_in_threadpool(pools.seal_pool, database, slm, pool_id=pool_id, count=body.count)
