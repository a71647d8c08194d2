"""Scoring jobs: score every window of a sealed pool with the served model, in the background."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from selector_service import pool_store as ps
from selector_service.deps import SelectorDep
from selector_service.errors import ApiError
from selector_service.pool_schemas import JobCreate, JobOut
from selector_service.routers.pools import pool_or_404

router = APIRouter(prefix="/v1", tags=["jobs"])


def job_out(job: dict[str, Any]) -> JobOut:
    return JobOut(id=job["id"], pool_id=job["pool_id"], model_fingerprint=job["model"].split(":")[0],
                  status=job["status"], done=job["done"], total=job["total"], error=job["error"])


@router.post("/jobs", response_model=JobOut)
async def create_job(body: JobCreate, request: Request, selector: SelectorDep) -> JobOut:
    """Create (or get) the job of (pool, served model) and make sure it runs unless it is done."""
    pool = await pool_or_404(selector, body.pool_id)
    if not pool["sealed"]:
        raise ApiError(409, "pool_not_sealed", f"pool {body.pool_id} is not sealed; upload its windows and seal it")
    job = await run_in_threadpool(ps.create_job, selector.store, pool_id=body.pool_id,
                                  model=selector.engine.model_key, total=pool["count"])
    if job["status"] in ps.OPEN_STATUSES:
        request.app.state.jobs.ensure(job["id"], job["pool_id"])
    return job_out(job)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: Annotated[str, PathParam(max_length=64)], selector: SelectorDep) -> JobOut:
    """Status (queued, running, done, failed), windows scored, pool size and error of a job."""
    job = await run_in_threadpool(ps.get_job, selector.store, job_id=job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
    return job_out(job)
