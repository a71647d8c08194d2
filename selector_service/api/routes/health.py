"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from selector_service.api.deps import DatabaseDep, SLMDep
from selector_service.api.errors import ErrorBody

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody,
                                        "description": "not ready: the cache database is unreachable"}})
async def readyz(database: DatabaseDep, slm: SLMDep) -> JSONResponse:
    """The model is loaded and the cache database answers."""
    # An unreachable database raises DatabaseUnavailable: the uniform 503 body with Retry-After, as on /v1.
    await run_in_threadpool(database.ping)
    return JSONResponse({"status": "ready", "model": slm.fingerprint})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
