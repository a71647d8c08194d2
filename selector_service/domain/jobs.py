"""Scoring jobs: every replica serving a model works on that model's open jobs, chunk by leased chunk.

A job is split in the database into chunks of its pool's windows (``store.job_chunks``). Each replica's
``JobRunner`` polls for open jobs of its model (started by a POST to any replica, or left unfinished by a
stopped one), claims the next free or expired chunk, renews the chunk's lease while it scores it through
the cache's compute path, and marks it done; the job's progress is the sum of its done chunks. A replica
killed mid-chunk loses only its lease: another takes the chunk when it expires, and windows it had already
stored are answered from the cache, never computed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool

from selector_service.cache.label_cache import LabelCache
from selector_service.config import Settings
from selector_service.domain.errors import DomainError
from selector_service.domain.pools import check_fits, sealed_pool
from selector_service.store import job_chunks, pool_rows
from selector_service.store.database import Database, DatabaseUnavailable
from selector_service.store.job_chunks import Chunk

log = logging.getLogger("selector_service")


def job_record(job: dict[str, Any]) -> dict[str, Any]:
    """A job as answered: its model key cut to the model's fingerprint."""
    return {"id": job["id"], "pool_id": job["pool_id"], "model_fingerprint": job["model"].split(":")[0],
            "status": job["status"], "done": job["done"], "total": job["total"], "error": job["error"]}


def find_job(database: Database, *, job_id: str) -> dict[str, Any]:
    """``job_record`` of the job; not_found (``job_not_found``) when there is none."""
    job = pool_rows.get_job(database=database, job_id=job_id)
    if job is None:
        raise DomainError("not_found", "job_not_found", f"no job with id {job_id!r}")
    return job_record(job)


class JobRunner:
    """Works on the open scoring jobs of the served model: one asyncio task per job, leasing chunks.

    Args:
        label_cache: the compute path (and the database) chunks are scored through.
        settings: chunk size, lease, poll interval and pause between chunks.
    """

    def __init__(self, label_cache: LabelCache, settings: Settings) -> None:
        self.label_cache = label_cache
        self.database = label_cache.database
        self.model = label_cache.slm.model_key
        self.chunk = settings.job_chunk_windows
        self.pause_s = settings.job_pause_s
        self.retry_s = settings.retry_after_s
        self.lease_s = settings.job_lease_s
        self.poll_s = settings.job_poll_s
        self.owner = f"{socket.gethostname()[:12]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        """This replica's id on the leases it holds and the chunks it did: host, process id and a random tail."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def start(self, pool_id: str) -> dict[str, Any]:
        """Create (or get) the job of (sealed pool, served model), split into chunks, and make sure this
        replica works on it unless it is done (the others join at their next poll).

        Returns:
            ``job_record`` of the job.
        """
        pool = await run_in_threadpool(sealed_pool, self.database, pool_id=pool_id)
        check_fits(self.label_cache.slm, tokenizer_hash=pool["tokenizer_hash"], window_len=pool["window_len"])
        job = await run_in_threadpool(pool_rows.create_job, database=self.database, pool_id=pool_id,
                                      model=self.model, total=pool["count"])
        await run_in_threadpool(job_chunks.split_job, database=self.database, job_id=job["id"],
                                total=job["total"], size=self.chunk)
        job = await run_in_threadpool(pool_rows.get_job, database=self.database, job_id=job["id"])
        if job["status"] in pool_rows.OPEN_STATUSES:
            self.ensure(job["id"], job["pool_id"])
        return job_record(job)

    def ensure(self, job_id: str, pool_id: str) -> None:
        """Start the job's task unless it is already running in this process."""
        task = self._tasks.get(job_id)
        if task is None or task.done():
            self._tasks[job_id] = asyncio.get_running_loop().create_task(self._run(job_id, pool_id))

    async def resume(self) -> None:
        """Work on the open jobs of the served model now, then poll for new ones every ``job_poll_s``.

        On SQLite (one process) leases left in the database belong to a process that is gone: dropped first.
        """
        if self.database.engine.dialect.name == "sqlite":
            with contextlib.suppress(DatabaseUnavailable):
                await run_in_threadpool(job_chunks.release_leases, database=self.database)
        await self.watch()

    async def watch(self) -> None:
        """Work on the open jobs of the served model now, and on those started later (polled)."""
        await self.poll()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def poll(self) -> None:
        """Start a task for each open job of the served model that has none in this process."""
        try:
            refs = await run_in_threadpool(pool_rows.open_jobs, database=self.database, model=self.model)
        except DatabaseUnavailable as e:
            log.warning("cannot look for scoring jobs now (database unreachable): %s", e)
            return
        for ref in refs:
            self.ensure(ref.id, ref.pool_id)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll()
            except Exception:  # a poll that fails for another reason is logged, the next one tries again
                log.exception("looking for scoring jobs failed")

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._poller = None

    async def _run(self, job_id: str, pool_id: str) -> None:
        while True:
            try:
                await self._work(job_id, pool_id)
                return
            except DatabaseUnavailable as e:
                log.warning("scoring job %s waits for the database: %s", job_id, e)
                await asyncio.sleep(self.retry_s)
            except Exception as e:
                log.exception("scoring job %s failed", job_id)
                message = str(e) if isinstance(e, JobFailed) else "scoring failed (see the service log)"
                with contextlib.suppress(Exception):
                    await run_in_threadpool(pool_rows.update_job, database=self.database, job_id=job_id,
                                            status="failed", error=message[:500])
                return

    async def _work(self, job_id: str, pool_id: str) -> None:
        """Claim, score and finish chunks until none is free (done, or leased by live replicas: the poll
        comes back for chunks whose lease runs out)."""
        db = self.database
        job = await run_in_threadpool(pool_rows.get_job, database=db, job_id=job_id)
        if job is None:
            return
        await run_in_threadpool(job_chunks.split_job, database=db, job_id=job_id, total=job["total"],
                                size=self.chunk)  # a job created before chunks existed
        first = True
        while True:
            chunk = await run_in_threadpool(job_chunks.claim_chunk, database=db, job_id=job_id, owner=self.owner,
                                            lease_s=self.lease_s)
            if chunk is None:
                return
            if first:
                log.info("working on scoring job %s of pool %s (from chunk %d)", job_id, pool_id, chunk.idx)
                first = False
            await self._score(chunk, pool_id)
            done, finished = await run_in_threadpool(job_chunks.finish_chunk, database=db, chunk=chunk,
                                                     owner=self.owner)
            if finished:
                log.info("scoring job %s done: %d windows", job_id, done)
                return
            if self.pause_s:
                await asyncio.sleep(self.pause_s)

    async def _score(self, chunk: Chunk, pool_id: str) -> None:
        """Score the chunk's windows that have no score row yet, renewing its lease meanwhile."""
        db = self.database
        renewal = asyncio.get_running_loop().create_task(self._renew(chunk))
        try:
            windows = await run_in_threadpool(pool_rows.unscored_windows, database=db, pool_id=pool_id,
                                              model=self.model, limit=chunk.stop - chunk.start, start=chunk.start,
                                              stop=chunk.stop)
            if windows:
                await self.label_cache.scores(windows)  # computes the misses, stores scores, labels, embedding
            left = await run_in_threadpool(pool_rows.unscored_windows, database=db, pool_id=pool_id,
                                           model=self.model, limit=1, start=chunk.start, stop=chunk.stop)
            if left:
                raise JobFailed("scoring made no progress: computed windows were not stored")
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _renew(self, chunk: Chunk) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await run_in_threadpool(job_chunks.renew_lease, database=self.database, chunk=chunk,
                                               owner=self.owner, lease_s=self.lease_s)
            except DatabaseUnavailable as e:
                log.warning("cannot renew the lease of chunk %d of job %s: %s", chunk.idx, chunk.job_id, e)
                continue
            if not held:  # it ran out and another replica took it: both finish it, rows are written once
                log.warning("lost the lease of chunk %d of job %s", chunk.idx, chunk.job_id)
                return


class JobFailed(Exception):
    """A job cannot go on; its message is stored on the job."""
