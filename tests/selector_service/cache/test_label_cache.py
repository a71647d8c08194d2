"""The label cache through the API, run once on a SQLite file and once on the real PostgreSQL (an isolated
schema per test): hits, keys, and damaged blobs recomputed, never served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlalchemy as sa

from selector_service.store.cache_rows import labels_params
from shared.blobs.labels import checksum
from shared.client import SelectorClient
from shared.wire import WIRE_MEDIA_TYPE
from tests.selector_service.conftest import count_rows, make_client


def test_second_request_is_all_cache_hits_with_the_same_bytes(
    tiny_checkpoint: Path, db_url: str, windows: np.ndarray
) -> None:
    body = {"windows": windows.tolist(), "k": 8}
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        first = c.post("/v1/soft-labels", json=body, headers={"accept": WIRE_MEDIA_TYPE})
        first_scores = c.post("/v1/scores", json={"windows": body["windows"]}).content
        before = sc.metrics()
        again = c.post("/v1/soft-labels", json=body, headers={"accept": WIRE_MEDIA_TYPE})
        again_scores = c.post("/v1/scores", json={"windows": body["windows"]}).content
        after = sc.metrics()
    assert first.status_code == again.status_code == 200
    assert first.content == again.content and first_scores == again_scores
    assert after["salt_cache_hits_total"] - before["salt_cache_hits_total"] == 16
    assert after["salt_cache_misses_total"] == before["salt_cache_misses_total"]
    assert after["salt_windows_computed_total"] == before["salt_windows_computed_total"] == 8
    # A new service process on the same database answers from the cache as well.
    with make_client(tiny_checkpoint, db_url) as c:
        third = c.post("/v1/soft-labels", json=body, headers={"accept": WIRE_MEDIA_TYPE})
        m = SelectorClient("http://testserver", http_client=c).metrics()
    assert third.content == first.content
    assert m["salt_cache_hits_total"] == 8 and m["salt_windows_computed_total"] == 0
    keys = count_rows(db_url)
    assert all(n == 1 for *_, n in keys)
    assert {p for _, _, p, _ in keys} == {"scores", labels_params(8, 1.0)}


def test_k_and_temperature_are_part_of_the_key(tiny_checkpoint: Path, db_url: str, windows: np.ndarray) -> None:
    with make_client(tiny_checkpoint, db_url) as c:
        a = c.post("/v1/soft-labels", json={"windows": windows[:2].tolist(), "k": 4}).json()
        b = c.post("/v1/soft-labels", json={"windows": windows[:2].tolist(), "k": 4, "temperature": 3.0}).json()
        m = SelectorClient("http://testserver", http_client=c).metrics()
    assert a["windows"][0]["logprobs"] != b["windows"][0]["logprobs"]
    assert m["salt_cache_misses_total"] == 4 and m["salt_cache_hits_total"] == 0


def test_a_damaged_blob_is_recomputed_never_served(tiny_checkpoint: Path, db_url: str, windows: np.ndarray) -> None:
    body = {"windows": windows[:2].tolist(), "k": 4}
    with make_client(tiny_checkpoint, db_url) as c:
        good = c.post("/v1/soft-labels", json=body, headers={"accept": WIRE_MEDIA_TYPE}).content
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE salt_cache SET blob = :b WHERE params = :p"),
                         {"b": b"\x28\xb5\x2f\xfd garbage", "p": labels_params(4, 1.0)})
        again = c.post("/v1/soft-labels", json=body, headers={"accept": WIRE_MEDIA_TYPE}).content
        m = SelectorClient("http://testserver", http_client=c).metrics()
        assert again == good
        assert m["salt_cache_bad_blobs_total"] == 2 and m["salt_windows_computed_total"] == 4
        # The bad rows were replaced: the next read is a hit again.
        c.post("/v1/soft-labels", json=body)
        m2 = SelectorClient("http://testserver", http_client=c).metrics()
        assert m2["salt_cache_bad_blobs_total"] == 2 and m2["salt_windows_computed_total"] == 4
        engine.dispose()


def test_one_flipped_byte_is_detected_recomputed_and_counted(tiny_checkpoint: Path, db_url: str,
                                                            windows: np.ndarray) -> None:
    """One byte flipped in one stored blob (scores and labels alike): caught by the checksum, recomputed,
    replaced in the database and counted in /metrics; the answer is the same as before the damage."""
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        good_labels = c.post("/v1/soft-labels", json={"windows": windows[:3].tolist()}).json()
        good_scores = c.post("/v1/scores", json={"windows": windows[:3].tolist()}).json()
        engine = sa.create_engine(db_url)
        try:
            with engine.begin() as conn:
                for params in (labels_params(32, 1.0), "scores"):
                    h, blob, ck = conn.execute(sa.text(
                        "SELECT window_hash, blob, checksum FROM salt_cache WHERE params = :p ORDER BY window_hash"
                    ), {"p": params}).first()
                    damaged = bytearray(blob)
                    damaged[len(damaged) // 2] ^= 0x01
                    conn.execute(sa.text("UPDATE salt_cache SET blob = :b WHERE window_hash = :h AND params = :p"),
                                 {"b": bytes(damaged), "h": h, "p": params})
            before = sc.metrics()
            assert c.post("/v1/soft-labels", json={"windows": windows[:3].tolist()}).json() == good_labels
            assert c.post("/v1/scores", json={"windows": windows[:3].tolist()}).json() == good_scores
            m = sc.metrics()
            assert m["salt_cache_bad_blobs_total"] - before.get("salt_cache_bad_blobs_total", 0) == 2
            assert m["salt_windows_computed_total"] - before["salt_windows_computed_total"] == 2
            with engine.connect() as conn:
                for blob, ck in conn.execute(sa.text("SELECT blob, checksum FROM salt_cache")):
                    assert checksum(bytes(blob)) == ck  # the damaged rows were replaced
        finally:
            engine.dispose()
