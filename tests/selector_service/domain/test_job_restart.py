"""A scoring job survives kill -9: the restarted service resumes it; every window ends with exactly one score
row and one label row, and every stored blob passes its checksum."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from selector_service.store.cache_rows import labels_params
from shared.blobs.labels import checksum
from shared.client import SelectorClient
from shared.data import PackedDataset
from tests.servers import start_server, stop_server


def test_killed_job_resumes_after_restart(tiny_checkpoint: Path, tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    slow = {"SALT_JOB_CHUNK_WINDOWS": "4", "SALT_JOB_PAUSE_S": "0.05", "SALT_WARMUP": "false"}
    proc, base = start_server(tiny_checkpoint, url, **slow)
    try:
        with SelectorClient(base) as c:
            pid = c.register_pool(tiny_dataset, name="restart")
            total = c.pool(pid)["count"]
            job = c.start_job(pid)
            deadline = time.monotonic() + 60
            while (done := c.job(job["id"])["done"]) < 12:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        proc.kill()  # SIGKILL: no shutdown, the job stays "running" in the database
        proc.wait()
        assert done < total
    finally:
        stop_server(proc)

    proc, base = start_server(tiny_checkpoint, url, SALT_JOB_CHUNK_WINDOWS="64", SALT_WARMUP="false")
    try:
        with SelectorClient(base) as c:
            final = c.wait_job(job["id"], poll_s=0.1, timeout_s=60)  # resumed at start-up, not asked again
            computed = c.metrics()["salt_windows_computed_total"]
            assert c.pool(pid)["scored"] == total
    finally:
        stop_server(proc)
    assert final["status"] == "done" and final["done"] == final["total"] == total
    assert computed <= total - done  # it went on where it stopped

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            per_window = conn.execute(sa.text(
                "SELECT pw.idx, count(c.window_hash) FROM salt_pool_window pw LEFT JOIN salt_cache c "
                "ON c.window_hash = pw.window_hash AND c.params = 'scores' WHERE pw.pool_id = :p GROUP BY pw.idx"
            ), {"p": pid}).all()
            rows = conn.execute(sa.text("SELECT count(*) FROM salt_cache WHERE params = 'scores'")).scalar_one()
            labels_per_window = conn.execute(sa.text(
                "SELECT pw.idx, count(c.window_hash) FROM salt_pool_window pw LEFT JOIN salt_cache c "
                "ON c.window_hash = pw.window_hash AND c.params = :lp WHERE pw.pool_id = :p GROUP BY pw.idx"
            ), {"p": pid, "lp": labels_params(32, 1.0)}).all()
            blobs = conn.execute(sa.text("SELECT blob, checksum FROM salt_cache")).all()
    finally:
        engine.dispose()
    assert len(per_window) == total and {n for _, n in per_window} == {1}
    assert rows == len(set(tiny_dataset.train.hashes))
    # Exactly one label row per window too (the default k, stored with the scores), and no torn blob.
    assert len(labels_per_window) == total and {n for _, n in labels_per_window} == {1}
    assert blobs and all(checksum(bytes(b)) == ck for b, ck in blobs)
