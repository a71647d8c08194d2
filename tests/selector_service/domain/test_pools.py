"""Pool rules without HTTP: registration against the served model, checked uploads that write nothing when
refused, and sealing only a complete pool."""

from __future__ import annotations

import numpy as np
import pytest

from selector_service.cache.slm import SLMRunner
from selector_service.domain import pools
from selector_service.store.database import Database
from shared.data import PackedDataset
from shared.hashing import window_hash
from tests.selector_service.conftest import assert_refused as refused


@pytest.fixture
def pool(database: Database, slm: SLMRunner, tiny_dataset: PackedDataset) -> dict:
    return pools.create_pool(database, slm, name="p", dataset_fingerprint=tiny_dataset.fingerprint,
                             tokenizer_hash=slm.tokenizer_hash, window_len=tiny_dataset.window_len)


def upload(database: Database, slm: SLMRunner, pool_id: str, windows: np.ndarray, start: int = 0,
           hashes: list[str] | None = None, limit: int = 16) -> int:
    hashes = hashes if hashes is not None else [window_hash(w) for w in windows]
    return pools.upload_windows(database, slm, pool_id=pool_id, start=start, hashes=hashes,
                                windows=windows.tolist(), max_batch_windows=limit)


def test_a_pool_is_registered_once_for_the_served_tokenizer(database: Database, slm: SLMRunner, pool: dict,
                                                            tiny_dataset: PackedDataset) -> None:
    assert pool | {"uploaded": 0, "count": 0, "resume_from": 0, "sealed": False, "scored": 0} == pool
    again = {"name": "p", "dataset_fingerprint": tiny_dataset.fingerprint, "tokenizer_hash": slm.tokenizer_hash}
    assert pools.create_pool(database, slm, **again, window_len=tiny_dataset.window_len) == pool
    msg = refused("conflict", "pool_conflict", pools.create_pool, database, slm, **again, window_len=9)
    assert msg == f"pool {pool['id']} exists with window_len {tiny_dataset.window_len}"
    assert "tokenizer" in refused("conflict", "tokenizer_mismatch", pools.create_pool, database, slm,
                                  **(again | {"tokenizer_hash": "ab" * 16}), window_len=9)
    refused("invalid", "window_too_long", pools.create_pool, database, slm, **(again | {"name": "q"}),
            window_len=slm.block_size + 2)
    refused("not_found", "pool_not_found", pools.describe_pool, database, slm, pool_id="0" * 32)


def test_a_refused_upload_writes_nothing(database: Database, slm: SLMRunner, pool: dict,
                                         tiny_dataset: PackedDataset) -> None:
    w = np.asarray(tiny_dataset.train.windows[:4], dtype=np.int64)
    hashes = [window_hash(x) for x in w]
    pid = pool["id"]
    msg = refused("invalid", "hash_mismatch", upload, database, slm, pid, w, hashes=[*hashes[:3], hashes[0]])
    assert msg == "windows[3] does not match hashes[3] (index 3)"
    bad = w.copy()
    bad[2, 5] = slm.vocab_size
    refused("invalid", "token_out_of_vocab", upload, database, slm, pid, bad, hashes=[window_hash(x) for x in bad])
    refused("invalid", "wrong_window_len", upload, database, slm, pid, w[:, :-1],
            hashes=[window_hash(x) for x in w[:, :-1]])
    refused("invalid", "invalid_request", upload, database, slm, pid, w, hashes=hashes[:3])
    refused("invalid", "invalid_request", upload, database, slm, pid, w, start=(1 << 31) - 3)
    refused("too_large", "batch_too_large", upload, database, slm, pid, w, limit=3)
    refused("invalid", "empty_batch", upload, database, slm, pid, w[:0])
    assert pools.describe_pool(database, slm, pool_id=pid)["uploaded"] == 0


def test_uploads_resume_and_only_a_complete_pool_seals(database: Database, slm: SLMRunner, pool: dict,
                                                       tiny_dataset: PackedDataset) -> None:
    w = np.asarray(tiny_dataset.train.windows[:6], dtype=np.int64)
    pid = pool["id"]
    assert upload(database, slm, pid, w[:3]) == 3
    assert upload(database, slm, pid, w[:3]) == 3  # a repeat is a no-op
    assert refused("conflict", "index_conflict", upload, database, slm, pid, w[3:5], start=2) == (
        "pool index 2 already holds another window")
    upload(database, slm, pid, w[4:6], start=4)  # index 3 is missing
    state = pools.describe_pool(database, slm, pool_id=pid)
    assert (state["uploaded"], state["resume_from"], state["count"]) == (5, 0, 5)
    assert refused("conflict", "pool_incomplete", pools.seal_pool, database, slm, pool_id=pid, count=6) == (
        "1 of 6 windows are missing; upload them, then seal")
    refused("conflict", "pool_incomplete", pools.seal_pool, database, slm, pool_id=pid, count=3)
    refused("conflict", "pool_not_sealed", pools.sealed_pool, database, pool_id=pid)
    upload(database, slm, pid, w[3:4], start=3)
    sealed = pools.seal_pool(database, slm, pool_id=pid, count=6)
    assert sealed["sealed"] and sealed["count"] == 6 and sealed["resume_from"] == 6
    assert pools.seal_pool(database, slm, pool_id=pid, count=6) == sealed
    refused("conflict", "pool_sealed", pools.seal_pool, database, slm, pool_id=pid, count=5)
    refused("conflict", "pool_sealed", upload, database, slm, pid, w[:1])
    assert pools.sealed_pool(database, pool_id=pid)["count"] == 6
