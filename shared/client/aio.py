"""asyncio transport: runs the operations with an ``httpx.AsyncClient`` and ``asyncio.sleep``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx

from shared.client.core import RETRY_ERRORS, Done, Op, Reply, Sleep, Step, advance
from shared.client.operations import Operations

T = TypeVar("T")


class AsyncSelectorClient(Operations):
    """asyncio client with the same methods as ``SelectorClient``, each returning an awaitable.

    ``async with AsyncSelectorClient(urls) as c: info = await c.model_info()``
    """

    def __init__(self, base_url: str | Sequence[str], *, http_client: httpx.AsyncClient | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSelectorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _drive(self, op: Op[T]) -> T:
        """Run an operation to its end and return its value."""
        step = advance(op, None)
        while not isinstance(step, Done):
            step = advance(op, await self._perform(step))
        return step.value

    async def _perform(self, step: Step) -> Reply:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        try:
            return await self._http.request(step.method, step.url, **step.kwargs)
        except RETRY_ERRORS as e:
            return e
