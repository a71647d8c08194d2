"""One error body for every failure: ``{"error": {"code", "message", "request_id"}}``.

Internal errors answer 500 with the request id only; their text goes to the log, never to the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from selector_service.domain.errors import DomainError, Kind
from selector_service.store.database import DatabaseUnavailable

log = logging.getLogger("selector_service")

_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          406: "not_acceptable", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
          422: "invalid_request", 500: "internal_error", 503: "unavailable"}


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries documenting the uniform error body for ``statuses``."""
    return {s: {"model": ErrorBody, "description": _CODES.get(s, "error").replace("_", " ")} for s in statuses}


# What any /v1 operation may answer besides its success (the conflicts are route-specific but share one body).
V1_ERRORS = error_responses(400, 401, 404, 409, 413, 422, 500, 503)


# The status of each kind of refusal the domain raises.
STATUS_OF_KIND: dict[Kind, int] = {"invalid": 422, "too_large": 413, "conflict": 409, "not_found": 404}


def error_body(code: str, message: str, request_id: str) -> dict[str, dict[str, str]]:
    """The body of every error answer (the ``ErrorBody`` model, as plain data)."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(status: int, code: str, message: str, request_id: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers)


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return error_response(STATUS_OF_KIND[exc.kind], exc.code, exc.message, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" or tuple(e.get("loc", ())) == ("body",) for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON", request_id_of(request))
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return error_response(422, "invalid_request", "; ".join(parts) + more, request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, request_id_of(request), getattr(exc, "headers", None))

    @app.exception_handler(DatabaseUnavailable)
    async def _db(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.warning("cache database unavailable: %s", exc)
        return error_response(503, "database_unavailable", "the cache database is unreachable; retry later",
                              request_id_of(request), {"Retry-After": str(retry_after_s)})
