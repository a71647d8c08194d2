"""Blocking transport: runs the operations with an ``httpx.Client`` and ``time.sleep``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx

from shared.client.core import RETRY_ERRORS, Done, Op, Reply, Sleep, Step, advance
from shared.client.operations import Operations

T = TypeVar("T")


class SelectorClient(Operations):
    """Blocking client. ``SelectorClient("http://127.0.0.1:8000")`` or a list of replicas' URLs.

    Keyword arguments: ``api_key``, ``timeout`` (s), ``retry_deadline_s``, ``backoff_s``, ``max_backoff_s``.
    """

    def __init__(self, base_url: str | Sequence[str], *, http_client: httpx.Client | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        # http_client: bring your own (e.g. FastAPI's TestClient); it gets this client's headers per request.
        self._http = http_client or httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SelectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drive(self, op: Op[T]) -> T:
        """Run an operation to its end and return its value."""
        step = advance(op, None)
        while not isinstance(step, Done):
            step = advance(op, self._perform(step))
        return step.value

    def _perform(self, step: Step) -> Reply:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        try:
            return self._http.request(step.method, step.url, **step.kwargs)
        except RETRY_ERRORS as e:
            return e
