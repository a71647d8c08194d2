"""Two service replicas (real processes) on one PostgreSQL database score one job together; one is killed
with SIGKILL while it holds a chunk's lease: the other takes that chunk when the lease runs out and finishes
the job, and every window of the pool ends with exactly one score row."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.client import SelectorClient
from shared.data import PackedDataset
from tests.servers import start_server, stop_server

pytestmark = pytest.mark.e2e

ENV = {"SALT_JOB_CHUNK_WINDOWS": "4", "SALT_JOB_PAUSE_S": "0.05", "SALT_JOB_LEASE_S": "2",
       "SALT_JOB_POLL_S": "0.2", "SALT_WARMUP": "false", "SALT_TORCH_THREADS": "1"}


def _chunks(engine: sa.Engine, job_id: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT idx, done, done_by, lease_owner FROM salt_job_chunk "
                                         "WHERE job_id = :j ORDER BY idx"), {"j": job_id}))


def test_kill_9_of_one_replica_mid_job(tiny_checkpoint: Path, tiny_dataset: PackedDataset, pg_url: str) -> None:
    a, url_a = start_server(tiny_checkpoint, pg_url, **ENV)
    b, url_b = start_server(tiny_checkpoint, pg_url, **ENV)
    engine = sa.create_engine(pg_url)
    mark = f"-{a.pid}-"  # the killed replica's lease owner id carries its process id
    try:
        with SelectorClient(url_a) as ca:
            pid = ca.register_pool(tiny_dataset, name="replicas")
            total = ca.pool(pid)["count"]
            job = ca.start_job(pid)  # asked of a only; b joins at its poll
        deadline = time.monotonic() + 60
        while True:
            # a is frozen (SIGSTOP) while its chunks are read, so it cannot finish the chunk it is seen
            # holding before the kill; it resumes when the moment is not the one wanted
            a.send_signal(signal.SIGSTOP)
            time.sleep(0.02)  # a commit a had sent just before is applied before the read
            chunks = _chunks(engine, job["id"])
            held = [c.idx for c in chunks if not c.done and c.lease_owner and mark in c.lease_owner]
            both = {c.done_by for c in chunks if c.done and c.done_by}
            if held and len(both) == 2:
                break
            a.send_signal(signal.SIGCONT)
            assert time.monotonic() < deadline, chunks
            time.sleep(0.02)
        a.send_signal(signal.SIGKILL)
        a.wait()
        assert sum(c.done for c in chunks) < len(chunks) // 2  # killed early in the job
        # only chunks still undone after the kill are the ones b must take over
        held = [c.idx for c in _chunks(engine, job["id"]) if not c.done and c.idx in held]
        assert held
        with SelectorClient(url_b) as cb:
            final = cb.wait_job(job["id"], poll_s=0.1, timeout_s=120)
            assert cb.pool(pid)["scored"] == total
    finally:
        stop_server(a)
        stop_server(b)
    assert (final["status"], final["done"], final["total"]) == ("done", total, total)
    after = _chunks(engine, job["id"])
    assert all(c.done for c in after)
    survivor = {c.done_by for c in after if mark not in c.done_by}
    assert len(survivor) == 1
    assert {after[i].done_by for i in held} == survivor  # the killed replica's chunks were taken over
    with engine.connect() as conn:
        per_window = conn.execute(sa.text(
            "SELECT pw.idx, count(c.window_hash) FROM salt_pool_window pw LEFT JOIN salt_cache c "
            "ON c.window_hash = pw.window_hash AND c.params = 'scores' WHERE pw.pool_id = :p GROUP BY pw.idx"
        ), {"p": pid}).all()
    engine.dispose()
    assert len(per_window) == total and {n for _, n in per_window} == {1}
