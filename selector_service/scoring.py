"""Scoring jobs: background tasks that feed a pool's unscored windows through the cache's compute path.

Progress is the pool's count of score rows for the served model, so a job resumed after a crash (the
lifespan restarts jobs left queued or running) continues where it stopped, and windows already in the
cache, from any job or request, are never computed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.concurrency import run_in_threadpool

from selector_service import pool_store as ps
from selector_service.config import Settings
from selector_service.selector import Selector
from selector_service.store import DatabaseUnavailable

log = logging.getLogger("selector_service")


class JobRunner:
    """Runs scoring jobs of the served model as asyncio tasks, one per job."""

    def __init__(self, selector: Selector, settings: Settings) -> None:
        self.selector = selector
        self.store = selector.store
        self.model = selector.engine.model_key
        self.chunk = settings.job_chunk_windows
        self.pause_s = settings.job_pause_s
        self.retry_s = settings.retry_after_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def ensure(self, job_id: str, pool_id: str) -> None:
        """Start the job's task unless it is already running in this process."""
        task = self._tasks.get(job_id)
        if task is None or task.done():
            self._tasks[job_id] = asyncio.get_running_loop().create_task(self._run(job_id, pool_id))

    async def resume(self) -> None:
        """Restart the jobs of the served model left queued or running."""
        try:
            refs = await run_in_threadpool(ps.open_jobs, self.store, model=self.model)
        except DatabaseUnavailable as e:
            log.warning("cannot resume scoring jobs now (database unreachable): %s", e)
            return
        for ref in refs:
            log.info("resuming scoring job %s of pool %s", ref.id, ref.pool_id)
            self.ensure(ref.id, ref.pool_id)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _run(self, job_id: str, pool_id: str) -> None:
        while True:
            try:
                await self._score(job_id, pool_id)
                return
            except DatabaseUnavailable as e:
                log.warning("scoring job %s waits for the database: %s", job_id, e)
                await asyncio.sleep(self.retry_s)
            except Exception as e:
                log.exception("scoring job %s failed", job_id)
                message = str(e) if isinstance(e, JobFailed) else "scoring failed (see the service log)"
                with contextlib.suppress(Exception):
                    await run_in_threadpool(ps.update_job, self.store, job_id=job_id, status="failed",
                                            error=message[:500])
                return

    async def _score(self, job_id: str, pool_id: str) -> None:
        store = self.store
        done = await run_in_threadpool(ps.scored_count, store, pool_id=pool_id, model=self.model)
        await run_in_threadpool(ps.update_job, store, job_id=job_id, status="running", done=done)
        while True:
            windows = await run_in_threadpool(ps.unscored_windows, store, pool_id=pool_id, model=self.model,
                                              limit=self.chunk)
            if not windows:
                break
            await self.selector.scores(windows)  # computes the misses and stores scores, labels, embedding
            now = await run_in_threadpool(ps.scored_count, store, pool_id=pool_id, model=self.model)
            if now <= done:
                raise JobFailed("scoring made no progress: computed windows were not stored")
            done = now
            await run_in_threadpool(ps.update_job, store, job_id=job_id, done=done)
            if self.pause_s:
                await asyncio.sleep(self.pause_s)
        await run_in_threadpool(ps.update_job, store, job_id=job_id, status="done", done=done, error=None)
        log.info("scoring job %s done: %d windows", job_id, done)


class JobFailed(Exception):
    """A job cannot go on; its message is stored on the job."""
