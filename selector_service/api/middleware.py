"""Pure ASGI middleware: the API key, request ids, body size limit, metrics, and a 500 that never leaks
internals."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from selector_service.api.errors import error_body
from selector_service.metrics import Metrics

log = logging.getLogger("selector_service")


class _BodyTooLarge(Exception):
    """Raised into the app's read of the body once it passes the limit (the rest is never read)."""


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
        ex = _Exchange(receive, send, rid, self.max_body)
        try:
            length = headers.get(b"content-length")
            if not self._authorized(scope, headers):
                await _error(ex.send, 401, "unauthorized", "missing or wrong API key", rid,
                             [(b"www-authenticate", b"Bearer")])
            elif length is not None and (not length.isdigit() or int(length) > self.max_body):
                await _error(ex.send, 413, "payload_too_large", ex.limit_message, rid)
            else:
                await self.app(scope, ex.receive, ex.send)
        except _BodyTooLarge:
            await ex.answer_too_large()
        except Exception:
            log.exception("internal error in request %s", rid)
            if not ex.started:
                await _error(ex.send, 500, "internal_error",
                             "internal server error; quote the request id when reporting it", rid)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(ex.status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)


class _Exchange:
    """One request's way through the middleware: the status answered, whether the answer has started, and
    the body bytes received, cut off past the limit."""

    def __init__(self, receive: Receive, send: Send, rid: str, max_body: int) -> None:
        self._receive = receive
        self._send = send
        self.rid = rid
        self.max_body = max_body
        self.limit_message = f"request body over the limit of {max_body} bytes"
        self.status = 500
        self.started = False
        self.too_large = False
        self.seen = 0

    async def send(self, message: Message) -> None:
        if self.too_large:
            # The app turned the cut-off body into an error of its own: answer 413 instead, once.
            await self.answer_too_large()
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send_with_id(message)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_body:
                self.too_large = True
                raise _BodyTooLarge
        return message

    async def answer_too_large(self) -> None:
        if not self.started:
            self.started = True
            await _error(self._send_with_id, 413, "payload_too_large", self.limit_message, self.rid)

    async def _send_with_id(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", []), (b"x-request-id", self.rid.encode("latin-1"))]
        await self._send(message)


async def _error(send: Send, status: int, code: str, message: str, rid: str,
                 extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """The uniform error body, written straight to ASGI (the app behind may not have answered at all)."""
    body = json.dumps(error_body(code, message, rid)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": body})
