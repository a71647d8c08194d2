"""Data access of pools, their windows, scoring jobs and selections (keyword-only, taking the database).

A pool's windows are rows keyed (pool id, index) holding the window hash and its packed tokens; inserts
ignore conflicts, so uploads can be repeated or resumed. A pool's scores are the cache's ``scores`` rows
of its window hashes: one per (model, hash) by key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Table, and_, func, select, update

from selector_service.store.cache_rows import SCORES_PARAMS
from selector_service.store.codec import pack_selection, pack_tokens, unpack_tokens
from selector_service.store.database import ROWS_PER_STATEMENT, Database, insert_ignoring_conflicts
from selector_service.store.tables import cache, job_chunks, jobs, pool_windows, pools, selections
from shared.blobs.labels import checksum
from shared.hashing import bytes_hash

OPEN_STATUSES = ("queued", "running")
"""Job statuses still to be worked on (resumed at start-up)."""


def pool_id_of(dataset_fingerprint: str, name: str) -> str:
    return bytes_hash("pool", dataset_fingerprint, name)


def job_id_of(pool_id: str, model: str) -> str:
    return bytes_hash("job", pool_id, model)


def selection_id_of(pool_id: str, model: str, params: dict[str, Any]) -> str:
    return bytes_hash("selection", pool_id, model, json.dumps(params, sort_keys=True))


def _by_id(database: Database, table: Table, row_id: str) -> dict[str, Any] | None:
    with database.connect() as conn:
        row = conn.execute(select(table).where(table.c.id == row_id)).mappings().first()
    return dict(row) if row else None


# ---------------------------------------------------------------- pools


def get_pool(*, database: Database, pool_id: str) -> dict[str, Any] | None:
    return _by_id(database, pools, pool_id)


def create_pool(*, database: Database, name: str, dataset_fingerprint: str, tokenizer_hash: str,
                window_len: int) -> dict[str, Any]:
    """The pool of (fingerprint, name), created if new; an existing one is returned as it is."""
    pid = pool_id_of(dataset_fingerprint, name)
    with database.transaction() as conn:
        conn.execute(insert_ignoring_conflicts(conn, pools).values(
            id=pid, name=name, dataset_fingerprint=dataset_fingerprint, tokenizer_hash=tokenizer_hash,
            window_len=window_len, count=None, sealed=False, created_at=time.time(),
        ))
    return get_pool(database=database, pool_id=pid)  # type: ignore[return-value]


def existing_hashes(*, database: Database, pool_id: str, start: int, stop: int) -> dict[int, str]:
    """Hash of each window already stored at an index in [start, stop)."""
    with database.connect() as conn:
        rows = conn.execute(select(pool_windows.c.idx, pool_windows.c.window_hash).where(
            pool_windows.c.pool_id == pool_id, pool_windows.c.idx >= start, pool_windows.c.idx < stop))
        return {int(i): h for i, h in rows}


def put_windows(*, database: Database, pool_id: str, start: int, hashes: list[str],
                windows: list[np.ndarray]) -> None:
    """Store windows at indices ``start..``; an index already stored is kept as it is."""
    values = [{"pool_id": pool_id, "idx": start + i, "window_hash": h, "tokens": pack_tokens(w)}
              for i, (h, w) in enumerate(zip(hashes, windows, strict=True))]
    step = ROWS_PER_STATEMENT
    with database.transaction() as conn:
        for i in range(0, len(values), step):
            conn.execute(insert_ignoring_conflicts(conn, pool_windows), values[i : i + step])


def upload_state(*, database: Database, pool_id: str) -> tuple[int, int]:
    """(windows uploaded, highest index + 1)."""
    with database.connect() as conn:
        n, top = conn.execute(select(func.count(), func.max(pool_windows.c.idx)).where(
            pool_windows.c.pool_id == pool_id)).one()
    return int(n), -1 if top is None else int(top) + 1


def seal_pool(*, database: Database, pool_id: str, count: int) -> None:
    with database.transaction() as conn:
        conn.execute(update(pools).where(pools.c.id == pool_id).values(count=count, sealed=True))


def _scored_join(model: str) -> ColumnElement[bool]:
    return and_(cache.c.model == model, cache.c.window_hash == pool_windows.c.window_hash,
                cache.c.params == SCORES_PARAMS)


def scored_count(*, database: Database, pool_id: str, model: str) -> int:
    """Windows of the pool that have a score row for ``model``."""
    stmt = (select(func.count()).select_from(pool_windows.join(cache, _scored_join(model)))
            .where(pool_windows.c.pool_id == pool_id))
    with database.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def unscored_windows(*, database: Database, pool_id: str, model: str, limit: int, start: int = 0,
                     stop: int | None = None) -> list[np.ndarray]:
    """Up to ``limit`` windows of the pool, at indices in [start, stop), without a score row for ``model``,
    by index."""
    in_range = [pool_windows.c.idx >= start] + ([] if stop is None else [pool_windows.c.idx < stop])
    stmt = (select(pool_windows.c.tokens)
            .select_from(pool_windows.outerjoin(cache, _scored_join(model)))
            .where(pool_windows.c.pool_id == pool_id, cache.c.window_hash.is_(None), *in_range)
            .order_by(pool_windows.c.idx).limit(limit))
    with database.connect() as conn:
        return [unpack_tokens(bytes(t)) for (t,) in conn.execute(stmt)]


def pool_score_rows(*, database: Database, pool_id: str, model: str) -> list[tuple[int, str, bytes, str]]:
    """(index, hash, score blob, checksum) of every scored window of the pool, by index."""
    stmt = (select(pool_windows.c.idx, pool_windows.c.window_hash, cache.c.blob, cache.c.checksum)
            .select_from(pool_windows.join(cache, _scored_join(model)))
            .where(pool_windows.c.pool_id == pool_id).order_by(pool_windows.c.idx))
    with database.connect() as conn:
        return [(int(i), h, bytes(b), c) for i, h, b, c in conn.execute(stmt)]


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobRef:
    id: str
    pool_id: str


def get_job(*, database: Database, job_id: str) -> dict[str, Any] | None:
    return _by_id(database, jobs, job_id)


def create_job(*, database: Database, pool_id: str, model: str, total: int) -> dict[str, Any]:
    """The job of (pool, model), created queued if new; a failed one is queued again, its chunks' leases
    dropped."""
    jid = job_id_of(pool_id, model)
    now = time.time()
    with database.transaction() as conn:
        conn.execute(insert_ignoring_conflicts(conn, jobs).values(
            id=jid, pool_id=pool_id, model=model, status="queued", done=0, total=total, error=None,
            created_at=now, updated_at=now,
        ))
        requeued = conn.execute(update(jobs).where(jobs.c.id == jid, jobs.c.status == "failed")
                                .values(status="queued", error=None, updated_at=now)).rowcount
        if requeued:  # the failed attempt's leases would hold its chunks until they ran out
            conn.execute(update(job_chunks).where(job_chunks.c.job_id == jid, job_chunks.c.done.is_(False))
                         .values(lease_owner=None, lease_expires=None))
    return get_job(database=database, job_id=jid)  # type: ignore[return-value]


def update_job(*, database: Database, job_id: str, **values: Any) -> None:
    with database.transaction() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values, updated_at=time.time()))


def open_jobs(*, database: Database, model: str) -> list[JobRef]:
    """Jobs of ``model`` left queued or running (to resume at start-up)."""
    with database.connect() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.pool_id).where(
            jobs.c.model == model, jobs.c.status.in_(OPEN_STATUSES)).order_by(jobs.c.created_at))
        return [JobRef(i, p) for i, p in rows]


# ---------------------------------------------------------------- selections


def get_selection(*, database: Database, selection_id: str) -> dict[str, Any] | None:
    return _by_id(database, selections, selection_id)


def put_selection(*, database: Database, selection_id: str, pool: dict[str, Any], model: str, method: str,
                  params: dict[str, Any], indices: np.ndarray, hashes: list[str]) -> dict[str, Any]:
    """Store a selection (a repeat of the same id keeps the first) and return its row."""
    blob = pack_selection(indices, hashes)
    with database.transaction() as conn:
        conn.execute(insert_ignoring_conflicts(conn, selections).values(
            id=selection_id, pool_id=pool["id"], model=model, dataset_fingerprint=pool["dataset_fingerprint"],
            tokenizer_hash=pool["tokenizer_hash"], method=method, count=len(hashes),
            params=json.dumps(params, sort_keys=True), blob=blob, checksum=checksum(blob), created_at=time.time(),
        ))
    return get_selection(database=database, selection_id=selection_id)  # type: ignore[return-value]


# ---------------------------------------------------------------- models that scored a pool


def model_keys(*, database: Database, fingerprint: str) -> list[str]:
    """Model keys (fingerprint:precision) of ``fingerprint`` with any score row (a range of the cache's key)."""
    stmt = (select(cache.c.model).where(cache.c.model.like(f"{fingerprint}:%"), cache.c.params == SCORES_PARAMS)
            .distinct().order_by(cache.c.model))
    with database.connect() as conn:
        return [m for (m,) in conn.execute(stmt)]


def job_models(*, database: Database, pool_id: str) -> list[str]:
    """Model keys of the scoring jobs started on the pool (any status), sorted."""
    stmt = select(jobs.c.model).where(jobs.c.pool_id == pool_id).distinct().order_by(jobs.c.model)
    with database.connect() as conn:
        return [m for (m,) in conn.execute(stmt)]
