"""Pools of windows, scoring jobs and selections: tables beside the cache and their data access.

A pool's windows are rows keyed (pool id, index) holding the window hash and its tokens (zstd of the
narrowest unsigned ids); inserts are ``ON CONFLICT DO NOTHING`` so uploads can be repeated or resumed.
A pool's scores are the cache's ``scores`` rows of its window hashes: one per (model, hash) by key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from selector_service.store import SCORES_PARAMS, Store, cache, metadata
from shared.hashing import bytes_hash
from shared.softlabels import BlobError, checksum

pools = Table(
    "salt_pool",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("dataset_fingerprint", String(64), nullable=False),
    Column("tokenizer_hash", String(64), nullable=False),
    Column("window_len", Integer, nullable=False),
    Column("count", Integer, nullable=True),
    Column("sealed", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)
pool_windows = Table(
    "salt_pool_window",
    metadata,
    Column("pool_id", String(32), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("window_hash", String(32), nullable=False),
    Column("tokens", LargeBinary, nullable=False),
)
jobs = Table(
    "salt_job",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pool_id", String(32), nullable=False, index=True),
    Column("model", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("done", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("error", String(500), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
selections = Table(
    "salt_selection",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pool_id", String(32), nullable=False),
    Column("model", String(64), nullable=False),
    Column("dataset_fingerprint", String(64), nullable=False),
    Column("tokenizer_hash", String(64), nullable=False),
    Column("method", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("params", String(2000), nullable=False),
    Column("blob", LargeBinary, nullable=False),
    Column("checksum", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)

OPEN_STATUSES = ("queued", "running")


def pool_id_of(dataset_fingerprint: str, name: str) -> str:
    return bytes_hash("pool", dataset_fingerprint, name)


def job_id_of(pool_id: str, model: str) -> str:
    return bytes_hash("job", pool_id, model)


def selection_id_of(pool_id: str, model: str, params: dict[str, Any]) -> str:
    return bytes_hash("selection", pool_id, model, json.dumps(params, sort_keys=True))


def pack_tokens(window: np.ndarray) -> bytes:
    dt = np.dtype("<u2") if int(window.max(initial=0)) < 1 << 16 else np.dtype("<u4")
    return bytes([dt.itemsize]) + zstandard.ZstdCompressor(level=3).compress(window.astype(dt).tobytes())


def unpack_tokens(blob: bytes) -> np.ndarray:
    dt = np.dtype("<u2") if blob[0] == 2 else np.dtype("<u4")
    return np.frombuffer(zstandard.ZstdDecompressor().decompress(blob[1:]), dt).astype(np.int64)


def _insert(conn: Connection):  # type: ignore[no-untyped-def]
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


# ---------------------------------------------------------------- pools


def get_pool(store: Store, *, pool_id: str) -> dict[str, Any] | None:
    with store._connect() as conn:
        row = conn.execute(select(pools).where(pools.c.id == pool_id)).mappings().first()
    return dict(row) if row else None


def create_pool(store: Store, *, name: str, dataset_fingerprint: str, tokenizer_hash: str,
                window_len: int) -> dict[str, Any]:
    """The pool of (fingerprint, name), created if new; an existing one is returned as it is."""
    pid = pool_id_of(dataset_fingerprint, name)
    with store._connect(begin=True) as conn:
        conn.execute(_insert(conn)(pools).values(
            id=pid, name=name, dataset_fingerprint=dataset_fingerprint, tokenizer_hash=tokenizer_hash,
            window_len=window_len, count=None, sealed=False, created_at=time.time(),
        ).on_conflict_do_nothing())
    return get_pool(store, pool_id=pid)  # type: ignore[return-value]


def existing_hashes(store: Store, *, pool_id: str, start: int, stop: int) -> dict[int, str]:
    with store._connect() as conn:
        rows = conn.execute(select(pool_windows.c.idx, pool_windows.c.window_hash).where(
            pool_windows.c.pool_id == pool_id, pool_windows.c.idx >= start, pool_windows.c.idx < stop))
        return {int(i): h for i, h in rows}


def put_windows(store: Store, *, pool_id: str, start: int, hashes: list[str], windows: list[np.ndarray]) -> None:
    values = [{"pool_id": pool_id, "idx": start + i, "window_hash": h, "tokens": pack_tokens(w)}
              for i, (h, w) in enumerate(zip(hashes, windows, strict=True))]
    with store._connect(begin=True) as conn:
        for i in range(0, len(values), 500):
            conn.execute(_insert(conn)(pool_windows).on_conflict_do_nothing(), values[i : i + 500])


def upload_state(store: Store, *, pool_id: str) -> tuple[int, int]:
    """(windows uploaded, highest index + 1)."""
    with store._connect() as conn:
        n, top = conn.execute(select(func.count(), func.max(pool_windows.c.idx)).where(
            pool_windows.c.pool_id == pool_id)).one()
    return int(n), -1 if top is None else int(top) + 1


def seal_pool(store: Store, *, pool_id: str, count: int) -> None:
    with store._connect(begin=True) as conn:
        conn.execute(update(pools).where(pools.c.id == pool_id).values(count=count, sealed=True))


def _scored_join(model: str):  # type: ignore[no-untyped-def]
    return and_(cache.c.model == model, cache.c.window_hash == pool_windows.c.window_hash,
                cache.c.params == SCORES_PARAMS)


def scored_count(store: Store, *, pool_id: str, model: str) -> int:
    """Windows of the pool that have a score row for ``model``."""
    stmt = (select(func.count()).select_from(pool_windows.join(cache, _scored_join(model)))
            .where(pool_windows.c.pool_id == pool_id))
    with store._connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def unscored_windows(store: Store, *, pool_id: str, model: str, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` windows of the pool without a score row for ``model``, by index."""
    stmt = (select(pool_windows.c.tokens)
            .select_from(pool_windows.outerjoin(cache, _scored_join(model)))
            .where(pool_windows.c.pool_id == pool_id, cache.c.window_hash.is_(None))
            .order_by(pool_windows.c.idx).limit(limit))
    with store._connect() as conn:
        return [unpack_tokens(bytes(t)) for (t,) in conn.execute(stmt)]


def pool_score_rows(store: Store, *, pool_id: str, model: str) -> list[tuple[int, str, bytes, str]]:
    """(index, hash, score blob, checksum) of every scored window of the pool, by index."""
    stmt = (select(pool_windows.c.idx, pool_windows.c.window_hash, cache.c.blob, cache.c.checksum)
            .select_from(pool_windows.join(cache, _scored_join(model)))
            .where(pool_windows.c.pool_id == pool_id).order_by(pool_windows.c.idx))
    with store._connect() as conn:
        return [(int(i), h, bytes(b), c) for i, h, b, c in conn.execute(stmt)]


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobRef:
    id: str
    pool_id: str


def get_job(store: Store, *, job_id: str) -> dict[str, Any] | None:
    with store._connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return dict(row) if row else None


def create_job(store: Store, *, pool_id: str, model: str, total: int) -> dict[str, Any]:
    """The job of (pool, model), created queued if new; a failed one is queued again."""
    jid = job_id_of(pool_id, model)
    now = time.time()
    with store._connect(begin=True) as conn:
        conn.execute(_insert(conn)(jobs).values(
            id=jid, pool_id=pool_id, model=model, status="queued", done=0, total=total, error=None,
            created_at=now, updated_at=now,
        ).on_conflict_do_nothing())
        conn.execute(update(jobs).where(jobs.c.id == jid, jobs.c.status == "failed")
                     .values(status="queued", error=None, updated_at=now))
    return get_job(store, job_id=jid)  # type: ignore[return-value]


def update_job(store: Store, *, job_id: str, **values: Any) -> None:
    with store._connect(begin=True) as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values, updated_at=time.time()))


def open_jobs(store: Store, *, model: str) -> list[JobRef]:
    """Jobs of ``model`` left queued or running (to resume at start-up)."""
    with store._connect() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.pool_id).where(
            jobs.c.model == model, jobs.c.status.in_(OPEN_STATUSES)).order_by(jobs.c.created_at))
        return [JobRef(i, p) for i, p in rows]


# ---------------------------------------------------------------- selections


def pack_selection(indices: np.ndarray, hashes: list[str]) -> bytes:
    raw = np.asarray(indices, dtype="<u4").tobytes() + b"".join(bytes.fromhex(h) for h in hashes)
    return zstandard.ZstdCompressor(level=3).compress(raw)


def unpack_selection(blob: bytes, expected_checksum: str, count: int) -> tuple[list[int], list[str]]:
    if checksum(blob) != expected_checksum:
        raise BlobError("selection blob checksum mismatch")
    raw = zstandard.ZstdDecompressor().decompress(blob)
    if len(raw) != 20 * count:
        raise BlobError("selection blob has the wrong length")
    indices = np.frombuffer(raw[: 4 * count], "<u4").tolist()
    hashes = [raw[4 * count + 16 * i : 4 * count + 16 * (i + 1)].hex() for i in range(count)]
    return indices, hashes


def get_selection(store: Store, *, selection_id: str) -> dict[str, Any] | None:
    with store._connect() as conn:
        row = conn.execute(select(selections).where(selections.c.id == selection_id)).mappings().first()
    return dict(row) if row else None


def put_selection(store: Store, *, selection_id: str, pool: dict[str, Any], model: str, method: str,
                  params: dict[str, Any], indices: np.ndarray, hashes: list[str]) -> dict[str, Any]:
    blob = pack_selection(indices, hashes)
    with store._connect(begin=True) as conn:
        conn.execute(_insert(conn)(selections).values(
            id=selection_id, pool_id=pool["id"], model=model, dataset_fingerprint=pool["dataset_fingerprint"],
            tokenizer_hash=pool["tokenizer_hash"], method=method, count=len(hashes),
            params=json.dumps(params, sort_keys=True), blob=blob, checksum=checksum(blob), created_at=time.time(),
        ).on_conflict_do_nothing())
    return get_selection(store, selection_id=selection_id)  # type: ignore[return-value]
