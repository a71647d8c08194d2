"""Leased chunks of scoring jobs (table ``salt_job_chunk``): how every replica works on the same job.

A job is split once into chunks, ranges [start, stop) of its pool's window indices. A replica claims the
first chunk that is neither done nor leased (or whose lease expired: its replica died) by writing its id
and an expiry; on PostgreSQL the candidate is read ``FOR UPDATE SKIP LOCKED``, so replicas claiming at
the same time take different chunks without waiting on each other. On SQLite (one process) the same
statements run without row locks; the conditional update still makes each claim exclusive. A chunk done
adds its windows to the job's progress; the last one marks the job done. Score rows are keyed by
(model, window hash), so a chunk scored twice (a lease lost mid-chunk) still leaves one row per window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.engine import Connection

from selector_service.store.database import ROWS_PER_STATEMENT, Database, insert_ignoring_conflicts
from selector_service.store.pool_rows import OPEN_STATUSES
from selector_service.store.tables import job_chunks, jobs


@dataclass(frozen=True)
class Chunk:
    """A claimed chunk: windows ``start`` to ``stop - 1`` of the job's pool."""

    job_id: str
    idx: int
    start: int
    stop: int


def _lock_job(conn: Connection, job_id: str) -> str | None:
    """Lock the job's row until the transaction ends (PostgreSQL); returns its status."""
    return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()).scalar()


def split_job(*, database: Database, job_id: str, total: int, size: int) -> None:
    """Split the job into chunks of ``size`` windows unless it has chunks already (a job with no windows is
    done at once). The job's row is locked, so two replicas never split one job twice."""
    with database.connect() as conn:
        if conn.execute(select(job_chunks.c.idx).where(job_chunks.c.job_id == job_id).limit(1)).first():
            return
    with database.transaction() as conn:
        _lock_job(conn, job_id)
        if conn.execute(select(job_chunks.c.idx).where(job_chunks.c.job_id == job_id).limit(1)).first():
            return
        values = [{"job_id": job_id, "idx": i, "start": s, "stop": min(s + size, total), "done": False,
                   "done_by": None, "lease_owner": None, "lease_expires": None}
                  for i, s in enumerate(range(0, total, size))]
        for i in range(0, len(values), ROWS_PER_STATEMENT):
            conn.execute(insert_ignoring_conflicts(conn, job_chunks), values[i : i + ROWS_PER_STATEMENT])
        if not values:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="done", updated_at=time.time()))


def _claimable(job_id: str, now: float) -> ColumnElement[bool]:
    return and_(job_chunks.c.job_id == job_id, job_chunks.c.done.is_(False),
                or_(job_chunks.c.lease_expires.is_(None), job_chunks.c.lease_expires < now))


def claim_chunk(*, database: Database, job_id: str, owner: str, lease_s: float) -> Chunk | None:
    """Lease the job's first free (or expired) chunk to ``owner`` for ``lease_s`` seconds, and mark the job
    running; None when the job is not open or every chunk left is done or leased by a live replica."""
    for _ in range(8):  # a claim lost to another replica (SQLite) tries the next chunk
        now = time.time()
        with database.transaction() as conn:
            open_job = select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.status.in_(OPEN_STATUSES))
            row = conn.execute(
                select(job_chunks.c.idx, job_chunks.c.start, job_chunks.c.stop)
                .where(_claimable(job_id, now), job_chunks.c.job_id.in_(open_job))
                .order_by(job_chunks.c.idx).limit(1).with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            taken = conn.execute(update(job_chunks).where(_claimable(job_id, now), job_chunks.c.idx == row.idx)
                                 .values(lease_owner=owner, lease_expires=now + lease_s)).rowcount
            if taken == 1:
                conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued")
                             .values(status="running", updated_at=now))
                return Chunk(job_id, int(row.idx), int(row.start), int(row.stop))
    return None


def renew_lease(*, database: Database, chunk: Chunk, owner: str, lease_s: float) -> bool:
    """Push the chunk's lease expiry ``lease_s`` seconds on; False when ``owner`` no longer holds it."""
    with database.transaction() as conn:
        return conn.execute(update(job_chunks).where(
            job_chunks.c.job_id == chunk.job_id, job_chunks.c.idx == chunk.idx, job_chunks.c.done.is_(False),
            job_chunks.c.lease_owner == owner,
        ).values(lease_expires=time.time() + lease_s)).rowcount == 1


def finish_chunk(*, database: Database, chunk: Chunk, owner: str) -> tuple[int, bool]:
    """Mark the chunk done (by ``owner``) and the job's progress the windows of its done chunks (the job is
    done with its last chunk). The job's row is locked, so replicas finishing chunks together count each
    other's.

    Returns:
        (windows done, whether the job is done).
    """
    now = time.time()
    with database.transaction() as conn:
        status = _lock_job(conn, chunk.job_id)
        conn.execute(update(job_chunks).where(job_chunks.c.job_id == chunk.job_id, job_chunks.c.idx == chunk.idx)
                     .values(done=True, done_by=owner, lease_owner=None, lease_expires=None))
        done, left = conn.execute(select(
            func.coalesce(func.sum(case((job_chunks.c.done, job_chunks.c.stop - job_chunks.c.start), else_=0)), 0),
            func.coalesce(func.sum(case((job_chunks.c.done, 0), else_=1)), 0),
        ).where(job_chunks.c.job_id == chunk.job_id)).one()
        finished = int(left) == 0
        if status in OPEN_STATUSES:
            conn.execute(update(jobs).where(jobs.c.id == chunk.job_id).values(
                done=int(done), status="done" if finished else "running", error=None, updated_at=now))
    return int(done), finished


def release_leases(*, database: Database) -> int:
    """Drop every lease of an unfinished chunk (SQLite at start-up: one process, so any lease left belongs to
    a process that is gone). Returns the leases dropped."""
    with database.transaction() as conn:
        return conn.execute(update(job_chunks).where(job_chunks.c.done.is_(False), job_chunks.c.lease_owner.isnot(None))
                            .values(lease_owner=None, lease_expires=None)).rowcount


def chunk_states(*, database: Database, job_id: str) -> list[dict[str, object]]:
    """Each of the job's chunks as a row (idx, start, stop, done, done_by, lease_owner, lease_expires)."""
    with database.connect() as conn:
        rows = conn.execute(select(job_chunks).where(job_chunks.c.job_id == job_id).order_by(job_chunks.c.idx))
        return [dict(r) for r in rows.mappings()]
