"""Pure ASGI middleware: the API key, request ids, body size limit, metrics, and a 500 that never leaks
internals."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from selector_service.metrics import Metrics

log = logging.getLogger("selector_service")


class _BodyTooLarge(Exception):
    pass


class ServiceMiddleware:
    """Outermost app layer of the service (inside uvicorn and, when configured, CORS; around FastAPI's own
    error handling). The key is checked here, so no route (docs and unknown paths included) is missed."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, api_key: str = "") -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.api_key = api_key.encode("utf-8")

    def _authorized(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """Every path but /healthz needs the API key when one is set (compared in constant time)."""
        if not self.api_key or scope.get("path") == "/healthz":
            return True
        auth = headers.get(b"authorization", b"")
        sent = auth[7:] if auth[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
        return hmac.compare_digest(sent, self.api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = False
        too_large = False
        limit_msg = f"request body over the limit of {self.max_body} bytes"

        async def send_wrapped(message: Message) -> None:
            nonlocal status, started
            if too_large:
                # The app turned the cut-off body into an error of its own: answer 413 instead, once.
                if not started:
                    started = True
                    await self._error(send_raw, 413, "payload_too_large", limit_msg, rid)
                return
            if message["type"] == "http.response.start":
                started = True
            await send_raw(message)

        seen = 0

        async def send_raw(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        async def receive_limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    too_large = True
                    raise _BodyTooLarge
            return message

        try:
            length = headers.get(b"content-length")
            if not self._authorized(scope, headers):
                await self._error(send_wrapped, 401, "unauthorized", "missing or wrong API key", rid,
                                  [(b"www-authenticate", b"Bearer")])
            elif length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self._error(send_wrapped, 413, "payload_too_large", limit_msg, rid)
            else:
                await self.app(scope, receive_limited, send_wrapped)
        except _BodyTooLarge:
            if not started:
                started = True
                await self._error(send_raw, 413, "payload_too_large", limit_msg, rid)
        except Exception:
            log.exception("internal error in request %s", rid)
            if not started:
                await self._error(send_wrapped, 500, "internal_error",
                                  "internal server error; quote the request id when reporting it", rid)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)

    @staticmethod
    async def _error(send: Send, status: int, code: str, message: str, rid: str,
                     extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *(extra_headers or [])]})
        await send({"type": "http.response.body", "body": body})
