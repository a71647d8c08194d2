"""Pools: a dataset's windows registered once (idempotent, resumable uploads), then sealed.

Every function runs in a worker thread (it waits on the database) and refuses a bad request with a
``DomainError`` before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selector_service.cache.slm import SLMRunner
from selector_service.domain.errors import DomainError
from selector_service.domain.pool_models import scored_by
from selector_service.domain.windows import check_batch_size, token_ids
from selector_service.store import pool_rows
from selector_service.store.database import Database
from shared.hashing import window_hash

MAX_INDICES = 1 << 31  # pool indices are stored as 32-bit integers (and packed as uint32 in selections)


def find_pool(database: Database, *, pool_id: str) -> dict[str, Any]:
    """The pool's row; not_found (``pool_not_found``) when there is none."""
    pool = pool_rows.get_pool(database=database, pool_id=pool_id)
    if pool is None:
        raise DomainError("not_found", "pool_not_found", f"no pool with id {pool_id!r}")
    return pool


def sealed_pool(database: Database, *, pool_id: str) -> dict[str, Any]:
    """The pool's row, refused (conflict, ``pool_not_sealed``) while it still takes windows."""
    pool = find_pool(database, pool_id=pool_id)
    if not pool["sealed"]:
        raise DomainError("conflict", "pool_not_sealed",
                          f"pool {pool_id} is not sealed; upload its windows and seal it")
    return pool


def describe(database: Database, pool: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The pool with its upload state, how many of its windows ``model`` (the served one) has scored, and how
    many each model that scored it has (``pool_models.scored_by``)."""
    pid = pool["id"]
    uploaded, top = pool_rows.upload_state(database=database, pool_id=pid)
    scored = pool_rows.scored_count(database=database, pool_id=pid, model=model)
    return {
        "id": pid, "name": pool["name"], "dataset_fingerprint": pool["dataset_fingerprint"],
        "tokenizer_hash": pool["tokenizer_hash"], "window_len": pool["window_len"],
        "count": pool["count"] if pool["sealed"] else uploaded, "uploaded": uploaded,
        "resume_from": uploaded if top == uploaded else 0, "sealed": bool(pool["sealed"]), "scored": scored,
        "scored_by": scored_by(database, pool_id=pid, served=model),
    }


def describe_pool(database: Database, slm: SLMRunner, *, pool_id: str) -> dict[str, Any]:
    """``describe`` of the pool with this id, for the served model."""
    return describe(database, find_pool(database, pool_id=pool_id), model=slm.model_key)


def check_fits(slm: SLMRunner, *, tokenizer_hash: str, window_len: int) -> None:
    """Refuse windows the served model cannot score: another tokenizer, or more positions than its context.
    Checked when a pool is registered and again when a model starts a scoring job on it (a pool registered
    through one model's service can be scored by any other sharing the database)."""
    served = slm.tokenizer_hash
    if tokenizer_hash != served:
        raise DomainError("conflict", "tokenizer_mismatch",
                          f"the pool's tokenizer hash {tokenizer_hash[:12]} is not the served model's "
                          f"{served[:12]}; prepare the dataset with the model's tokenizer or serve a matching model")
    if window_len - 1 > slm.block_size:
        raise DomainError("invalid", "window_too_long",
                          f"window_len {window_len} predicts more than the model's context of {slm.block_size}")


def create_pool(database: Database, slm: SLMRunner, *, name: str, dataset_fingerprint: str, tokenizer_hash: str,
                window_len: int) -> dict[str, Any]:
    """Register (or get) the pool of (dataset fingerprint, name), for the served model's tokenizer only."""
    check_fits(slm, tokenizer_hash=tokenizer_hash, window_len=window_len)
    pool = pool_rows.create_pool(database=database, name=name, dataset_fingerprint=dataset_fingerprint,
                                 tokenizer_hash=tokenizer_hash, window_len=window_len)
    if pool["window_len"] != window_len:
        raise DomainError("conflict", "pool_conflict", f"pool {pool['id']} exists with window_len {pool['window_len']}")
    return describe(database, pool, model=slm.model_key)


def upload_windows(database: Database, slm: SLMRunner, *, pool_id: str, start: int, hashes: Sequence[str],
                   windows: Sequence[Sequence[int]], max_batch_windows: int) -> int:
    """Store windows at indices ``start..`` after checking every one (length, vocabulary, hash) and that no
    index already holds another window; a repeat is a no-op. Returns the number of windows received."""
    pool = find_pool(database, pool_id=pool_id)
    if pool["sealed"]:
        raise DomainError("conflict", "pool_sealed", f"pool {pool_id} is sealed; it takes no more windows")
    n = len(windows)
    check_batch_size(n, max_batch_windows)
    if len(hashes) != n:
        raise DomainError("invalid", "invalid_request", f"{len(hashes)} hashes for {n} windows")
    if start + n > MAX_INDICES:
        raise DomainError("invalid", "invalid_request", "window indices must stay below 2**31")
    wlen = pool["window_len"]
    arrays = []
    for i, (ids, h) in enumerate(zip(windows, hashes, strict=True)):
        if len(ids) != wlen:
            raise DomainError("invalid", "wrong_window_len",
                              f"windows[{i}] has {len(ids)} ids; the pool's windows have {wlen}")
        arr = token_ids(ids, f"windows[{i}]", slm.vocab_size)
        if window_hash(arr) != h:
            raise DomainError("invalid", "hash_mismatch",
                              f"windows[{i}] does not match hashes[{i}] (index {start + i})")
        arrays.append(arr)
    there = pool_rows.existing_hashes(database=database, pool_id=pool_id, start=start, stop=start + n)
    for idx, h in there.items():
        if hashes[idx - start] != h:
            raise DomainError("conflict", "index_conflict", f"pool index {idx} already holds another window")
    pool_rows.put_windows(database=database, pool_id=pool_id, start=start, hashes=list(hashes), windows=arrays)
    return n


def seal_pool(database: Database, slm: SLMRunner, *, pool_id: str, count: int) -> dict[str, Any]:
    """Mark the pool complete once windows 0..count-1, and no others, are uploaded (a repeat is a no-op)."""
    pool = find_pool(database, pool_id=pool_id)
    if pool["sealed"]:
        if pool["count"] != count:
            raise DomainError("conflict", "pool_sealed",
                              f"pool {pool_id} is already sealed with {pool['count']} windows")
        return describe(database, pool, model=slm.model_key)
    uploaded, top = pool_rows.upload_state(database=database, pool_id=pool_id)
    if top > count:
        raise DomainError("conflict", "pool_incomplete", f"pool {pool_id} holds windows at indices >= {count}")
    if uploaded != count:
        raise DomainError("conflict", "pool_incomplete",
                          f"{count - uploaded} of {count} windows are missing; upload them, then seal")
    pool_rows.seal_pool(database=database, pool_id=pool_id, count=count)
    return describe_pool(database, slm, pool_id=pool_id)
