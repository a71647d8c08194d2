"""The FastAPI app factory: ``create_app(settings)``; the lifespan loads the SLM once and opens the cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from selector_service.api.errors import V1_ERRORS, error_responses, install_error_handlers
from selector_service.api.middleware import ServiceMiddleware
from selector_service.api.routes import health, jobs, model, pools, scores, selections, soft_labels, soft_labels_by_hash
from selector_service.cache.batching import forward_thread
from selector_service.cache.label_cache import LabelCache
from selector_service.cache.slm import SLMRunner
from selector_service.config import Settings, confined_model_path
from selector_service.domain.jobs import JobRunner
from selector_service.metrics import Metrics
from selector_service.store.database import Database, DatabaseUnavailable
from selector_service.store.tables import init_schema

log = logging.getLogger("selector_service")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the SLM once (and warm it up), open the database, start the batcher and resume unfinished jobs."""
    settings: Settings = app.state.settings
    loop = asyncio.get_running_loop()
    forward = forward_thread()  # the SLM is loaded, warmed up and run on this one thread
    try:
        slm = await loop.run_in_executor(forward, partial(
            SLMRunner, str(confined_model_path(settings)), device=settings.device, precision=settings.precision,
            threads=settings.torch_threads, head_chunk_tokens=settings.head_chunk_tokens,
            cpu_postprocessing=settings.cpu_postprocessing,
        ))
        if settings.warmup:
            await loop.run_in_executor(forward, slm.warmup)
    except BaseException:
        forward.shutdown(wait=False)
        raise
    database = Database(settings.database_url, init_schema)
    try:
        await run_in_threadpool(database.ensure_ready)
    except DatabaseUnavailable as e:
        # The process stays up; requests answer 503 until the database is back.
        log.warning("cache database unreachable at start-up: %s", e)
    label_cache = LabelCache(settings, slm, database, app.state.metrics, forward_pool=forward)
    label_cache.batcher.start()
    app.state.label_cache = label_cache
    app.state.jobs = runner = JobRunner(label_cache, settings)
    await runner.resume()  # scoring jobs a stopped or killed process left unfinished
    log.info("serving %s (%s, %s) with cache %s", settings.model_path, slm.precision, slm.device, database.display_url)
    try:
        yield
    finally:
        await runner.stop()
        await label_cache.batcher.stop()
        database.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service app. Nothing is loaded until the lifespan starts."""
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPI(
        title="SALT selector service",
        version="1",
        description="Soft labels and learnability scores of an SLM, answered from a cache.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app, settings.retry_after_s)
    routers = (soft_labels.router, soft_labels_by_hash.router, scores.router, pools.router, jobs.router,
               selections.router, model.router)
    for r in routers:
        app.include_router(r, responses=V1_ERRORS)
    app.include_router(health.router, responses=error_responses(401, 500))
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if key:
        _document_the_key(app)
    app.add_middleware(ServiceMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes, api_key=key)
    if origins := settings.cors_origin_list():
        # Outermost, so a browser's preflight (which never carries the key) is answered here.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "x-api-key", "content-type", "accept", "x-request-id"])
    return app


def _document_the_key(app: FastAPI) -> None:
    """Declare the API key in the OpenAPI schema: required by every operation but /healthz."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        schema["security"] = [{"bearer": []}, {"apiKey": []}]
        schema["paths"]["/healthz"]["get"]["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
