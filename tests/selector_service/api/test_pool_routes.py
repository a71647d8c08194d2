"""Pools, scoring jobs and selections over the API, on SQLite and PostgreSQL; bad input on each route."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from shared.client import SelectorClient, SelectorError
from shared.data import PackedDataset
from shared.hashing import window_hash
from tests.selector_service.conftest import assert_error, make_client

POOL = 48  # windows of the pools these tests register


def score_rows(url: str, hashes: set[str]) -> dict[str, int]:
    """Score rows per window hash, counted in the database itself."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text(
                "SELECT window_hash, count(*) FROM salt_cache WHERE params = 'scores' GROUP BY model, window_hash"
            )).all()
    finally:
        engine.dispose()
    return {h: n for h, n in found if h in hashes}


def test_pool_job_selection_flow(tiny_checkpoint: Path, tiny_dataset: PackedDataset, db_url: str) -> None:
    with make_client(tiny_checkpoint, db_url, job_chunk_windows=16) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        info = sc.model_info()
        assert info["tokenizer_hash"] == tiny_dataset.tokenizer_hash

        seen: list[tuple[int, int]] = []
        pid = sc.register_pool(tiny_dataset, name="flow", chunk=20, indices=range(POOL),
                               progress=lambda d, t: seen.append((d, t)))
        assert seen[-1] == (POOL, POOL)
        assert sc.register_pool(tiny_dataset, name="flow", indices=range(POOL)) == pid  # sealed: nothing sent
        pool = sc.pool(pid)
        assert pool | {"scored": 0} == pool and pool["sealed"] and pool["count"] == POOL
        assert pool["dataset_fingerprint"] == tiny_dataset.fingerprint and pool["window_len"] == 33

        with pytest.raises(SelectorError) as e:
            sc.create_selection(pid, "salt_ds", count=5)
        assert e.value.status == 409 and e.value.code == "pool_not_scored" and "scoring job" in e.value.message

        job = sc.start_job(pid)
        assert job["pool_id"] == pid and job["total"] == POOL
        job = sc.wait_job(job["id"], poll_s=0.05, timeout_s=60)
        assert job["status"] == "done" and job["done"] == job["total"] == POOL and job["error"] is None
        assert sc.start_job(pid) == job  # the same job, already done: nothing runs again
        assert sc.pool(pid)["scored"] == POOL

        hashes = tiny_dataset.train.hashes[:POOL]
        counts = score_rows(db_url, set(hashes))
        assert set(counts) == set(hashes) and set(counts.values()) == {1}

        # salt_ds picks the highest SALT_DS scores among selectable windows, ties by hash.
        scores = sc.scores(np.asarray(tiny_dataset.train.windows[:POOL], dtype=np.int64))
        ranked = sorted((-s.salt_ds, s.hash, i) for i, s in enumerate(scores) if s.salt_ds is not None)
        sel = sc.create_selection(pid, "salt_ds", count=10)
        full = sc.selection(sel["id"])
        assert full["indices"] == sorted(i for *_, i in ranked[:10])
        assert full["hashes"] == [hashes[i] for i in full["indices"]]
        assert full["method"] == "salt_ds" and full["count"] == 10
        assert full["model_fingerprint"] == info["fingerprint"]
        assert full["dataset_fingerprint"] == tiny_dataset.fingerprint
        assert full["tokenizer_hash"] == tiny_dataset.tokenizer_hash
        assert sc.create_selection(pid, "salt_ds", count=10)["id"] == sel["id"]  # stored, reused

        for method, diversity in (("loss_band", "kmeans"), ("random", "dedup"), ("random", "none")):
            s = sc.selection(sc.create_selection(pid, method, fraction=0.25, diversity=diversity, seed=1)["id"])
            assert s["count"] == len(s["indices"]) == 12 and s["indices"] == sorted(set(s["indices"]))
            assert s["params"]["diversity"] == diversity
        kmeans = sc.create_selection(pid, "random", count=8, diversity="kmeans", n_clusters=4)
        assert kmeans["params"]["n_clusters"] == 4 and kmeans["count"] == 8


@pytest.fixture
def small(tiny_checkpoint: Path, sqlite_url: str):  # type: ignore[no-untyped-def]
    with make_client(tiny_checkpoint, sqlite_url, max_batch_windows=16) as c:
        yield c


def new_pool(c: TestClient, ds: PackedDataset, name: str, **over: object) -> dict:
    body = {"name": name, "dataset_fingerprint": ds.fingerprint, "tokenizer_hash": ds.tokenizer_hash,
            "window_len": ds.window_len} | over
    r = c.post("/v1/pools", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def upload(c: TestClient, pid: str, windows: np.ndarray, start: int = 0, hashes: list[str] | None = None):  # type: ignore[no-untyped-def]
    hashes = hashes if hashes is not None else [window_hash(w) for w in windows]
    return c.post(f"/v1/pools/{pid}/windows", json={"start": start, "hashes": hashes, "windows": windows.tolist()})


def test_bad_pool_job_and_selection_requests(small: TestClient, tiny_dataset: PackedDataset) -> None:
    c, ds = small, tiny_dataset
    w = np.asarray(ds.train.windows[:8], dtype=np.int64)
    good = {"name": "bad", "dataset_fingerprint": ds.fingerprint, "tokenizer_hash": ds.tokenizer_hash,
            "window_len": ds.window_len}
    msg = assert_error(c.post("/v1/pools", json=good | {"tokenizer_hash": "ab" * 16}), 409, "tokenizer_mismatch")
    assert "tokenizer" in msg["message"]
    assert_error(c.post("/v1/pools", json=good | {"name": "x" * 65}), 422)
    assert_error(c.post("/v1/pools", json=good | {"window_len": 1000}), 422, "window_too_long")
    pool = new_pool(c, ds, "bad")
    pid = pool["id"]
    assert new_pool(c, ds, "bad")["id"] == pid and pool["uploaded"] == 0

    # Uploads: every window is checked before anything is written.
    hashes = [window_hash(x) for x in w]
    assert_error(upload(c, pid, w, hashes=[*hashes[:3], hashes[4], *hashes[4:]]), 422, "hash_mismatch")
    assert_error(upload(c, pid, w[:, :-1], hashes=[window_hash(x) for x in w[:, :-1]]), 422, "wrong_window_len")
    big = w.copy()
    big[0, 0] = 10**6
    assert_error(upload(c, pid, big, hashes=[window_hash(x) for x in big]), 422, "token_out_of_vocab")
    assert_error(upload(c, pid, np.repeat(w, 3, axis=0)), 413, "batch_too_large")
    assert_error(upload(c, pid, w, hashes=hashes[:-1]), 422)
    assert c.get(f"/v1/pools/{pid}").json()["uploaded"] == 0

    assert upload(c, pid, w[:4]).json()["received"] == 4
    assert upload(c, pid, w[:4]).status_code == 200  # idempotent
    assert_error(upload(c, pid, w[4:6], start=2), 409, "index_conflict")
    assert c.get(f"/v1/pools/{pid}").json()["resume_from"] == 4
    assert_error(c.post(f"/v1/pools/{pid}/seal", json={"count": 8}), 409, "pool_incomplete")
    assert_error(c.post("/v1/jobs", json={"pool_id": pid}), 409, "pool_not_sealed")
    assert upload(c, pid, w[4:], start=4).status_code == 200
    assert c.post(f"/v1/pools/{pid}/seal", json={"count": 8}).json()["sealed"]
    assert_error(upload(c, pid, w[:1]), 409, "pool_sealed")
    assert_error(c.post(f"/v1/pools/{pid}/seal", json={"count": 7}), 409, "pool_sealed")

    # Unknown ids.
    missing = "0" * 32
    assert_error(c.get(f"/v1/pools/{missing}"), 404, "pool_not_found")
    assert_error(upload(c, missing, w[:1]), 404, "pool_not_found")
    assert_error(c.post("/v1/jobs", json={"pool_id": missing}), 404, "pool_not_found")
    assert_error(c.get(f"/v1/jobs/{missing}"), 404, "job_not_found")
    assert_error(c.get(f"/v1/selections/{missing}"), 404, "selection_not_found")
    assert_error(c.post("/v1/selections", json={"pool_id": missing, "method": "random", "count": 1}), 404)

    # Selections: budget rules, unknown method or diversity, unscored pool.
    sel = {"pool_id": pid, "method": "salt_ds"}
    assert_error(c.post("/v1/selections", json=sel | {"count": 2}), 409, "pool_not_scored")
    assert "exactly one" in assert_error(c.post("/v1/selections", json=sel | {"count": 2, "fraction": 0.5}),
                                         422)["message"]
    assert_error(c.post("/v1/selections", json=sel), 422)
    assert_error(c.post("/v1/selections", json=sel | {"count": 2, "method": "best"}), 422)
    assert_error(c.post("/v1/selections", json=sel | {"count": 2, "diversity": "pca"}), 422)
    assert_error(c.post("/v1/selections", json=sel | {"fraction": 1.5}), 422)

    sc = SelectorClient("http://testserver", http_client=c)
    sc.wait_job(sc.start_job(pid)["id"], poll_s=0.05, timeout_s=60)
    msg = assert_error(c.post("/v1/selections", json=sel | {"method": "random", "count": 9}), 422, "budget_too_large")
    assert "over the pool's 8 windows" in msg["message"]
    msg = assert_error(c.post("/v1/selections", json=sel | {"method": "loss_band", "count": 8}), 422,
                       "selection_impossible")
    assert "candidates" in msg["message"]
    assert_error(c.post("/v1/selections", json=sel | {"method": "random", "count": 2, "diversity": "kmeans",
                                                      "n_clusters": 9}), 422, "selection_impossible")
    assert c.post("/v1/selections", json=sel | {"method": "random", "count": 8}).status_code == 200
