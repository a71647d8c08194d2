"""The client's core, free of I/O: steps, the retry and failover policy, errors and response decoding.

An *operation* is a generator. It yields the I/O it needs as steps, ``Send`` (one HTTP request) and
``Sleep``; for each ``Send`` it is sent back the response, or the exception of ``RETRY_ERRORS`` that the
request raised (any other exception propagates out of the transport); it returns its decoded value. A
response is told from a failure by not being an exception, not by its class: a client brought by the
caller may answer with another httpx-compatible response class (Starlette's TestClient does).

A transport (``shared.client.sync``, ``shared.client.aio``) runs the steps with its own HTTP client and
sleep, so the logic here is written once for both.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

import httpx
import numpy as np

from shared.labels import WindowScore

T = TypeVar("T")

RETRY_STATUS = frozenset({502, 503, 504})
RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError,
                httpx.PoolTimeout)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)")

Windows: TypeAlias = np.ndarray | Sequence[Sequence[int]]
"""(N, L+1) token ids: an integer array or nested sequences."""


@dataclass(frozen=True)
class Send:
    """Step: send one request, ``httpx`` style (``kwargs``: json, headers, ...); replied with the response."""

    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    """Step: wait this many seconds; replied with None."""

    seconds: float


Step: TypeAlias = Send | Sleep
Reply: TypeAlias = httpx.Response | Exception | None
Op: TypeAlias = Generator[Step, Any, T]
"""An operation returning ``T``: ``Op[SoftLabels]``."""


@dataclass(frozen=True)
class Done(Generic[T]):
    """An operation's end, with the value it returned."""

    value: T


def advance(op: Op[T], reply: Reply) -> Step | Done[T]:
    """Send ``reply`` to the operation (None to start it); its next step, or ``Done`` once it returned."""
    try:
        return op.send(reply)
    except StopIteration as stop:
        return Done(stop.value)


class SelectorError(Exception):
    """The service answered an error (or could not be reached before the retry deadline)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = body


def error_of(r: httpx.Response) -> SelectorError:
    """The service's error body ``{"error": {"code", "message", "request_id"}}`` as a SelectorError."""
    try:
        body = r.json()
        err = body["error"]
        return SelectorError(r.status_code, err.get("code", "error"), err.get("message", ""), err.get("request_id"),
                             body)
    except (ValueError, KeyError, TypeError):
        return SelectorError(r.status_code, "error", r.text[:200])


def windows_json(windows: Windows) -> list[list[int]]:
    if isinstance(windows, np.ndarray):
        return windows.astype(np.int64, copy=False).tolist()
    return [list(map(int, w)) for w in windows]


def scores_of(body: dict[str, Any]) -> list[WindowScore]:
    return [
        WindowScore(w["hash"], w["n_tokens"], w["mean_loss"], w["median_loss"], w["top1_acc"], w["mean_entropy"],
                    w["salt_ds"], np.asarray(w["embedding"], dtype=np.float16))
        for w in body["windows"]
    ]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as {sample name with labels: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and (m := _SAMPLE.match(line)):
            out[m.group(1)] = float(m.group(2))
    return out


class ClientCore:
    """Base URLs, credentials and the retry policy; ``_call`` is one request with retry and failover."""

    def __init__(self, base_url: str | Sequence[str], *, api_key: str | None = None, timeout: float = 60.0,
                 retry_deadline_s: float = 30.0, backoff_s: float = 0.1, max_backoff_s: float = 5.0) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("give at least one base URL")
        self.base_urls = [u.rstrip("/") for u in urls]
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retry_deadline_s = retry_deadline_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._turn = itertools.count()  # next() is atomic under the GIL: safe across threads
        self._models: dict[str, dict[str, Any]] = {}
        """Each replica's ``/v1/model``, read once before the first checked request to it (base URL -> it)."""

    def _first(self) -> int:
        """Replica a new request starts at: round-robin over the base URLs, one step per request."""
        return next(self._turn) % len(self.base_urls)

    def _url(self, first: int, attempt: int, path: str) -> str:
        # A retry (connect error, 503) moves on to the next replica: failover without a health table.
        return self.base_urls[(first + attempt) % len(self.base_urls)] + path

    def _delay(self, attempt: int, r: httpx.Response | None) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.5 + random.random())
        if r is not None and (ra := r.headers.get("retry-after", "")).isdigit():
            delay = max(delay, min(float(ra), self.max_backoff_s))
        return delay

    def _with_auth(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "headers": {**self.headers, **kwargs.get("headers", {})}}

    @staticmethod
    def _accept(r: httpx.Response) -> bool:
        """True for a success; False for a status worth retrying; raises SelectorError for any other error."""
        if r.status_code < 400:
            return True
        if r.status_code not in RETRY_STATUS:
            raise error_of(r)
        return False

    def _backoff(self, attempt: int, reply: httpx.Response | Exception, deadline: float) -> float:
        """Seconds to wait before the next attempt; raises the failure once the deadline would pass."""
        r = None if isinstance(reply, Exception) else reply
        delay = self._delay(attempt, r)
        if time.monotonic() + delay > deadline:
            if isinstance(reply, Exception):
                raise SelectorError(0, "unreachable", f"selector service unreachable: {reply}") from reply
            raise error_of(reply)
        return delay

    def _call(self, method: str, path: str, **kwargs: Any) -> Op[httpx.Response]:
        """One request to ``path`` starting at the next replica. Connect errors, timeouts and 502/503/504 are
        retried on the following replicas with backoff until ``retry_deadline_s``; other errors raise at once."""
        r, _ = yield from self._attempts(method, path, False, kwargs)
        return r

    def _checked_call(self, method: str, path: str, **kwargs: Any) -> Op[tuple[httpx.Response, dict[str, Any]]]:
        """``_call``, with the ``/v1/model`` of the replica that answered (read from it once, before the first
        such request to it), so its answer can be checked against the model it serves."""
        r, info = yield from self._attempts(method, path, True, kwargs)
        assert info is not None
        return r, info

    def _attempts(self, method: str, path: str, checked: bool,
                  kwargs: dict[str, Any]) -> Op[tuple[httpx.Response, dict[str, Any] | None]]:
        deadline = time.monotonic() + self.retry_deadline_s
        first = self._first()
        attempt = 0
        while True:
            base = self._url(first, attempt, "")
            info = self._models.get(base) if checked else None
            reply: httpx.Response | Exception | None = None
            if checked and info is None:  # a replica not seen yet: what it serves, before asking it anything
                reply = yield Send("GET", base + "/v1/model", self._with_auth({}))
                if not isinstance(reply, Exception) and self._accept(reply):
                    info = self._models.setdefault(base, reply.json())
                    reply = None
            if reply is None:
                reply = yield Send(method, base + path, self._with_auth(kwargs))
                if not isinstance(reply, Exception) and self._accept(reply):
                    return reply, info
            yield Sleep(self._backoff(attempt, reply, deadline))
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Op[dict[str, Any]]:
        """``_call`` with the JSON object the service answered."""
        body: dict[str, Any] = (yield from self._call(method, path, **kwargs)).json()
        return body

    def _once(self, url: str) -> Op[httpx.Response]:
        """A GET of this very URL, without retry or failover; errors raise as they come."""
        reply = yield Send("GET", url, self._with_auth({}))
        if isinstance(reply, Exception):
            raise reply
        if reply.status_code >= 400:
            raise error_of(reply)
        return reply
