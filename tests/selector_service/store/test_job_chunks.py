"""Leased chunks of a scoring job, on SQLite and PostgreSQL: a job is split once, each chunk is leased to one
replica at a time, an expired lease is taken by another, and the job's progress is its done chunks."""

from __future__ import annotations

import threading
import time
from collections import Counter

import sqlalchemy as sa

from selector_service.store import job_chunks as jc
from selector_service.store import pool_rows
from selector_service.store.database import Database
from selector_service.store.tables import init_schema, job_chunks


def _job(db: Database, total: int = 10, size: int = 4) -> str:
    job = pool_rows.create_job(database=db, pool_id="p" * 32, model="m", total=total)
    jc.split_job(database=db, job_id=job["id"], total=total, size=size)
    jc.split_job(database=db, job_id=job["id"], total=total, size=3)  # split once: a second call changes nothing
    return job["id"]


def test_a_job_is_split_once_and_its_progress_is_its_done_chunks(db: Database) -> None:
    jid = _job(db)
    assert [(c["start"], c["stop"]) for c in jc.chunk_states(database=db, job_id=jid)] == [(0, 4), (4, 8), (8, 10)]
    a = jc.claim_chunk(database=db, job_id=jid, owner="a", lease_s=60)
    b = jc.claim_chunk(database=db, job_id=jid, owner="b", lease_s=60)
    assert a is not None and b is not None and (a.idx, b.idx) == (0, 1)  # a leased chunk is not handed out again
    assert pool_rows.get_job(database=db, job_id=jid)["status"] == "running"
    assert jc.finish_chunk(database=db, chunk=b, owner="b") == (4, False)
    c = jc.claim_chunk(database=db, job_id=jid, owner="b", lease_s=60)
    assert c is not None and (c.start, c.stop) == (8, 10)
    assert jc.claim_chunk(database=db, job_id=jid, owner="c", lease_s=60) is None  # all leased or done
    assert jc.finish_chunk(database=db, chunk=c, owner="b") == (6, False)
    assert jc.finish_chunk(database=db, chunk=a, owner="a") == (10, True)
    job = pool_rows.get_job(database=db, job_id=jid)
    assert (job["status"], job["done"], job["total"]) == ("done", 10, 10)
    assert [c["done_by"] for c in jc.chunk_states(database=db, job_id=jid)] == ["a", "b", "b"]
    assert jc.claim_chunk(database=db, job_id=jid, owner="c", lease_s=60) is None


def test_an_expired_lease_is_taken_by_another_replica(db: Database) -> None:
    jid = _job(db, total=4)
    dead = jc.claim_chunk(database=db, job_id=jid, owner="dead", lease_s=0.5)
    assert dead is not None
    assert jc.claim_chunk(database=db, job_id=jid, owner="live", lease_s=60) is None  # still leased
    assert jc.renew_lease(database=db, chunk=dead, owner="dead", lease_s=0.5)
    time.sleep(0.6)
    taken = jc.claim_chunk(database=db, job_id=jid, owner="live", lease_s=60)
    assert taken == dead
    assert not jc.renew_lease(database=db, chunk=dead, owner="dead", lease_s=60)  # the dead one lost it
    assert jc.finish_chunk(database=db, chunk=taken, owner="live") == (4, True)


def test_a_failed_job_hands_out_no_chunk_until_queued_again_and_an_empty_job_is_done(db: Database) -> None:
    jid = _job(db)
    assert jc.claim_chunk(database=db, job_id=jid, owner="failing", lease_s=3600) is not None
    pool_rows.update_job(database=db, job_id=jid, status="failed", error="x")
    assert jc.claim_chunk(database=db, job_id=jid, owner="a", lease_s=60) is None
    again = pool_rows.create_job(database=db, pool_id="p" * 32, model="m", total=10)
    assert (again["id"], again["status"], again["error"]) == (jid, "queued", None)
    retry = jc.claim_chunk(database=db, job_id=jid, owner="a", lease_s=60)  # the failed attempt's lease dropped
    assert retry is not None and retry.idx == 0
    empty = pool_rows.create_job(database=db, pool_id="q" * 32, model="m", total=0)
    jc.split_job(database=db, job_id=empty["id"], total=0, size=4)
    assert pool_rows.get_job(database=db, job_id=empty["id"])["status"] == "done"


def test_leases_left_by_a_gone_process_are_released(db: Database) -> None:
    jid = _job(db)
    assert jc.claim_chunk(database=db, job_id=jid, owner="gone", lease_s=3600) is not None
    assert jc.release_leases(database=db) == 1
    assert jc.claim_chunk(database=db, job_id=jid, owner="new", lease_s=60).idx == 0  # type: ignore[union-attr]


def test_replicas_claiming_together_never_share_a_chunk(pg_url: str) -> None:
    """Eight claimers (threads with their own connections) on one PostgreSQL job: FOR UPDATE SKIP LOCKED
    hands every chunk to exactly one of them."""
    dbs = [Database(pg_url, init_schema) for _ in range(8)]
    jid = _job(dbs[0], total=200, size=2)
    claims: list[tuple[str, int]] = []
    barrier = threading.Barrier(len(dbs))

    def work(i: int) -> None:
        barrier.wait()
        while (chunk := jc.claim_chunk(database=dbs[i], job_id=jid, owner=f"r{i}", lease_s=60)) is not None:
            claims.append((f"r{i}", chunk.idx))
            jc.finish_chunk(database=dbs[i], chunk=chunk, owner=f"r{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(dbs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(idx for _, idx in claims) == list(range(100))
    assert len(Counter(owner for owner, _ in claims)) > 1
    job = pool_rows.get_job(database=dbs[0], job_id=jid)
    assert (job["status"], job["done"]) == ("done", 200)
    with dbs[0].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(job_chunks.c.done.is_(False))).scalar() == 0
    for d in dbs:
        d.dispose()
