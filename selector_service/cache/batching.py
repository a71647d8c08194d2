"""Dynamic batching: cache misses of concurrent requests are coalesced into shared forward passes.

Requests put work on a queue; one loop takes what is waiting (up to ``max_batch_tokens`` tokens,
waiting at most ``max_wait_ms`` for company), runs the forward pass on a dedicated thread, then
stores the results on a second thread while the next forward runs. A window already in flight is
not computed again: later askers wait for the first computation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from selector_service.cache.slm import Computed, SLMRunner, Work
from selector_service.metrics import Metrics

log = logging.getLogger("selector_service")

Persist = Callable[[list[Work], list[Computed]], None]


def forward_thread() -> ThreadPoolExecutor:
    """The one thread that loads, warms up and runs the SLM.

    On CPU, torch's intra-op thread pool (OpenMP) belongs to the thread that first runs a parallel
    region: a model warmed up on one thread and run on another starts a second pool, and the two
    pools compete for the cores (measured with a Hugging Face SLM on 2 cores: the service's forward at
    0.86x of the same forward in-process, 0.97x once everything ran on this one thread).
    """
    return ThreadPoolExecutor(1, thread_name_prefix="salt-forward")


class Batcher:
    """Coalesces work from concurrent requests into forward passes of bounded size."""

    def __init__(self, slm: SLMRunner, persist: Persist, metrics: Metrics, *, max_batch_tokens: int,
                 max_wait_ms: float, forward_pool: ThreadPoolExecutor | None = None) -> None:
        self.slm = slm
        self.persist = persist
        self.metrics = metrics
        self.max_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[Work, asyncio.Future[Computed]]] = asyncio.Queue()
        self._inflight: dict[tuple[str, str, tuple[int, float]], asyncio.Future[Computed]] = {}
        self._forward_pool = forward_pool or forward_thread()
        self._store_pool = ThreadPoolExecutor(1, thread_name_prefix="salt-store")
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        self._forward_pool.shutdown(wait=True)
        self._store_pool.shutdown(wait=True)

    async def compute(self, works: list[Work]) -> list[Computed]:
        """Results for each work item (one label set each: a top-k (k, temperature) or a sampled (draws,
        temperature)), computed once however often asked."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Computed]] = []
        for w in works:
            ((kind, param),) = [("topk", p) for p in w.label_params] + [("sample", p) for p in w.samples]
            key = (w.window_hash, kind, param)
            fut = self._inflight.get(key)
            if fut is None:
                fut = loop.create_future()
                self._inflight[key] = fut
                fut.add_done_callback(lambda _f, key=key: self._inflight.pop(key, None))
                self._queue.put_nowait((w, fut))
            futures.append(fut)
        return list(await asyncio.gather(*(asyncio.shield(f) for f in futures)))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        carry: tuple[Work, asyncio.Future[Computed]] | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            batch = [first]
            tokens = len(first[0].window) - 1
            deadline = loop.time() + self.max_wait
            while tokens < self.max_tokens:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                n = len(nxt[0].window) - 1
                if tokens + n > self.max_tokens:
                    carry = nxt
                    break
                batch.append(nxt)
                tokens += n
            await self._run(batch, tokens)

    async def _run(self, batch: list[tuple[Work, asyncio.Future[Computed]]], tokens: int) -> None:
        loop = asyncio.get_running_loop()
        works = self._merge([w for w, _ in batch])
        t0 = time.perf_counter()
        try:
            results, passes = await loop.run_in_executor(self._forward_pool, self.slm.run, works)
        except Exception as e:  # answered as 500 by the requests waiting on it
            log.exception("forward pass failed")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        m = self.metrics
        m.forward_seconds.observe(time.perf_counter() - t0)
        m.forward_passes.inc(passes)
        m.windows_computed.inc(len(works))
        m.tokens_computed.inc(sum(len(w.window) - 1 for w in works))
        m.batch_windows.observe(len(works))
        m.batch_tokens.observe(tokens)
        log.debug("forward: %d windows, %d tokens, %.1f ms", len(works), tokens, 1e3 * (time.perf_counter() - t0))
        by_hash = {w.window_hash: r for w, r in zip(works, results, strict=True)}
        task = loop.create_task(self._store_and_answer(batch, works, results, by_hash))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _store_and_answer(
        self, batch: list[tuple[Work, asyncio.Future[Computed]]], works: list[Work], results: list[Computed],
        by_hash: dict[str, Computed],
    ) -> None:
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        try:
            await loop.run_in_executor(self._store_pool, self.persist, works, results)
        except Exception as e:
            error = e
        for w, fut in batch:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(by_hash[w.window_hash])

    @staticmethod
    def _merge(works: list[Work]) -> list[Work]:
        """One work item per distinct window, asking for every label parameter wanted of it."""
        merged: dict[str, Work] = {}
        for w in works:
            if w.window_hash in merged:
                merged[w.window_hash].label_params |= w.label_params
                merged[w.window_hash].samples |= w.samples
            else:
                merged[w.window_hash] = Work(w.window_hash, w.window, set(w.label_params), set(w.samples))
        return list(merged.values())
