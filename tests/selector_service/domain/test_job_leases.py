"""Two replicas' job runners on one job (SQLite and PostgreSQL), without HTTP: the one not asked joins at its
poll, both score chunks, every window ends with exactly one score row and none is computed twice; a chunk
whose replica died (lease run out) is scored by the other."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import sqlalchemy as sa

from selector_service.cache.label_cache import LabelCache
from selector_service.cache.slm import SLMRunner
from selector_service.config import Settings
from selector_service.domain import pools
from selector_service.domain.jobs import JobRunner
from selector_service.metrics import Metrics
from selector_service.store import job_chunks, pool_rows
from selector_service.store.database import Database
from shared.data import PackedDataset
from shared.hashing import window_hash

WINDOWS = 48


def _pool(db: Database, slm: SLMRunner, ds: PackedDataset) -> str:
    w = np.asarray(ds.train.windows[:WINDOWS], dtype=np.int64)
    pool = pools.create_pool(db, slm, name="leases", dataset_fingerprint=ds.fingerprint,
                             tokenizer_hash=slm.tokenizer_hash, window_len=ds.window_len)
    pools.upload_windows(db, slm, pool_id=pool["id"], start=0, hashes=[window_hash(x) for x in w],
                         windows=w.tolist(), max_batch_windows=WINDOWS)
    pools.seal_pool(db, slm, pool_id=pool["id"], count=WINDOWS)
    return str(pool["id"])


def _runner(db: Database, slm: SLMRunner, url: str, **overrides: float) -> tuple[JobRunner, Metrics]:
    settings = Settings(model_path="/x", database_url=url, job_chunk_windows=4, job_poll_s=0.05, **overrides)
    metrics = Metrics()
    cache = LabelCache(settings, slm, db, metrics)
    cache.batcher.start()
    return JobRunner(cache, settings), metrics


async def _until_done(db: Database, job_id: str, timeout_s: float = 60) -> dict:
    end = time.monotonic() + timeout_s
    while (job := pool_rows.get_job(database=db, job_id=job_id))["status"] != "done":
        assert job["status"] != "failed" and time.monotonic() < end, job
        await asyncio.sleep(0.02)
    return job


def _score_rows_per_window(db: Database, pool_id: str) -> set[int]:
    with db.connect() as conn:
        return {n for _, n in conn.execute(sa.text(
            "SELECT pw.idx, count(c.window_hash) FROM salt_pool_window pw LEFT JOIN salt_cache c "
            "ON c.window_hash = pw.window_hash AND c.params = 'scores' WHERE pw.pool_id = :p GROUP BY pw.idx"),
            {"p": pool_id})}


def _computed(m: Metrics) -> float:
    return m.registry.get_sample_value("salt_windows_computed_total") or 0.0


def test_two_runners_share_one_job(db: Database, db_url: str, slm: SLMRunner, tiny_dataset: PackedDataset) -> None:
    pid = _pool(db, slm, tiny_dataset)

    async def main() -> tuple[dict, list[Metrics], list[str]]:
        (a, ma), (b, mb) = _runner(db, slm, db_url, job_pause_s=0.02), _runner(db, slm, db_url, job_pause_s=0.02)
        await b.resume()  # b polls; only a is asked
        job = await a.start(pid)
        try:
            return await _until_done(db, job["id"]), [ma, mb], [a.owner, b.owner]
        finally:
            for r in (a, b):
                await r.stop()
                await r.label_cache.batcher.stop()

    job, metrics, owners = asyncio.run(main())
    assert (job["done"], job["total"]) == (WINDOWS, WINDOWS)
    done_by = [c["done_by"] for c in job_chunks.chunk_states(database=db, job_id=job["id"])]
    assert len(done_by) == WINDOWS // 4 and set(done_by) == set(owners)  # both replicas scored chunks
    assert _score_rows_per_window(db, pid) == {1}
    assert sum(_computed(m) for m in metrics) == len({window_hash(w) for w in tiny_dataset.train.windows[:WINDOWS]})


def test_a_dead_replicas_chunk_is_scored_by_the_other(db: Database, db_url: str, slm: SLMRunner,
                                                      tiny_dataset: PackedDataset) -> None:
    pid = _pool(db, slm, tiny_dataset)
    job = pool_rows.create_job(database=db, pool_id=pid, model=slm.model_key, total=WINDOWS)
    job_chunks.split_job(database=db, job_id=job["id"], total=WINDOWS, size=4)
    dead = job_chunks.claim_chunk(database=db, job_id=job["id"], owner="dead", lease_s=1.0)  # then it died
    assert dead is not None

    async def main() -> dict:
        live, _ = _runner(db, slm, db_url, job_lease_s=1.0)
        await live.watch()  # as a PostgreSQL replica resumes: no lease is dropped
        try:
            return await _until_done(db, job["id"])
        finally:
            await live.stop()
            await live.label_cache.batcher.stop()

    final = asyncio.run(main())
    assert final["done"] == WINDOWS
    states = job_chunks.chunk_states(database=db, job_id=job["id"])
    assert states[dead.idx]["done"] and states[dead.idx]["done_by"] not in (None, "dead")
    assert _score_rows_per_window(db, pid) == {1}


def _lookups_meet(*caches: LabelCache) -> None:
    """Each cache's lookup waits until every one has looked: all find the same misses and compute them, as two
    replicas do when a lost lease has them score one chunk at once (on a loaded machine one could otherwise
    finish before the other looks)."""
    looked: list[int] = []
    met = asyncio.Event()
    for cache in caches:
        real = cache._lookup

        async def lookup(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            found = await _real(*args, **kwargs)
            looked.append(1)
            if len(looked) == len(caches):
                met.set()
            await met.wait()
            return found

        cache._lookup = lookup  # type: ignore[method-assign]


def test_a_chunk_scored_twice_leaves_one_row_per_window(db: Database, db_url: str, slm: SLMRunner,
                                                         tiny_dataset: PackedDataset) -> None:
    """A lease lost mid-chunk means two replicas score the same windows at once: both compute, the cache's
    key (model, window hash, params) and ON CONFLICT DO NOTHING keep one row per window."""
    windows = [np.asarray(w, dtype=np.int64) for w in tiny_dataset.train.windows[:8]]

    async def main() -> list[Metrics]:
        (a, ma), (b, mb) = _runner(db, slm, db_url), _runner(db, slm, db_url)
        _lookups_meet(a.label_cache, b.label_cache)
        try:
            first, second = await asyncio.gather(a.label_cache.scores(windows), b.label_cache.scores(windows))
            assert [s.mean_loss for s in first] == [s.mean_loss for s in second]
            return [ma, mb]
        finally:
            for r in (a, b):
                await r.label_cache.batcher.stop()

    metrics = asyncio.run(main())
    assert [_computed(m) for m in metrics] == [8, 8]  # both computed every window
    with db.connect() as conn:
        per_key = conn.execute(sa.text("SELECT count(*) FROM salt_cache GROUP BY model, window_hash, params")).all()
    assert len(per_key) == 16 and {n for (n,) in per_key} == {1}  # scores and labels, once each
