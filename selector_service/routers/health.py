"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from selector_service.store import DatabaseUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: the cache database is unreachable",
                                        "content": {"application/json": {"schema": {"type": "object"}}}}})
async def readyz(request: Request) -> JSONResponse:
    """The model is loaded and the cache database answers."""
    selector = request.app.state.selector
    try:
        await run_in_threadpool(selector.store.ping)
    except DatabaseUnavailable:
        retry = str(request.app.state.settings.retry_after_s)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503,
                            headers={"Retry-After": retry})
    return JSONResponse({"status": "ready", "model": selector.engine.fingerprint})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
