"""Scoring jobs: score every window of a sealed pool with the served model, in the background."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from selector_service.api.deps import DatabaseDep, JobsDep
from selector_service.api.pool_schemas import JobCreate, JobOut
from selector_service.domain.jobs import find_job

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post("/jobs", response_model=JobOut)
async def create_job(body: JobCreate, jobs: JobsDep) -> dict[str, Any]:
    """Create (or get) the job of (pool, served model) and make sure it runs unless it is done."""
    return await jobs.start(body.pool_id)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: Annotated[str, PathParam(max_length=64)], database: DatabaseDep) -> dict[str, Any]:
    """Status (queued, running, done, failed), windows scored, pool size and error of a job."""
    return await run_in_threadpool(find_job, database, job_id=job_id)
