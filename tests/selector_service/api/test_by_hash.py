"""POST /v1/soft-labels/by-hash, once on SQLite and once on PostgreSQL: cached windows answered by hash
(the same labels as the window route), the others named as missing; bad and oversized bodies refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from fastapi.testclient import TestClient

from shared.client import SelectorClient
from shared.hashing import window_digests, window_hash
from shared.wire import (
    WIRE_MEDIA_TYPE,
    decode_sampled_wire,
    decode_sampled_wire_blobs,
    decode_wire,
    decode_wire_blobs,
    wire_metadata,
)
from tests.selector_service.conftest import assert_error, make_client

OCTETS = {"content-type": "application/octet-stream"}


def by_hash(c: TestClient, digests: np.ndarray, k: int = 8, temperature: float = 1.0):  # type: ignore[no-untyped-def]
    r = c.post(f"/v1/soft-labels/by-hash?k={k}&temperature={temperature}", content=digests.tobytes(), headers=OCTETS)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == WIRE_MEDIA_TYPE
    return decode_wire(r.content), wire_metadata(r.content)


def test_cached_missing_and_none(tiny_checkpoint: Path, db_url: str, windows: np.ndarray) -> None:
    digests = window_digests(windows)
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        none, meta = by_hash(c, digests)
        assert none.ids.shape[0] == 0 and json.loads(meta["missing"]) == list(range(8)) and meta["count"] == "8"
        assert sc.metrics()["salt_windows_computed_total"] == 0  # asking by hash never computes
        ref = sc.soft_labels(windows[[1, 4, 6]], k=8)
        some, meta = by_hash(c, digests)
        assert json.loads(meta["missing"]) == [0, 2, 3, 5, 7]
        assert some.hashes == ref.hashes == [window_hash(windows[i]) for i in (1, 4, 6)]
        assert torch.equal(some.ids, ref.ids) and torch.equal(some.logprobs, ref.logprobs)
        assert torch.equal(some.tail, ref.tail) and torch.equal(some.lengths, ref.lengths)
        assert (meta["model"], meta["precision"], meta["kind"]) == (sc.model_info()["fingerprint"], "fp32", "topk")
        assert (meta["k"], float(meta["temperature"])) == ("8", 1.0)
        # Every window cached, repeats and any order: all answered, in request order.
        full = sc.soft_labels(windows, k=8)
        order = [7, 0, 7, 3]
        got, meta = by_hash(c, digests[order])
        assert json.loads(meta["missing"]) == [] and got.hashes == [full.hashes[i] for i in order]
        assert torch.equal(got.ids, full.ids[order]) and torch.equal(got.logprobs, full.logprobs[order])
        # Another k or temperature is another key: nothing cached there.
        assert json.loads(by_hash(c, digests, k=4)[1]["missing"]) == list(range(8))
        assert json.loads(by_hash(c, digests, temperature=2.0)[1]["missing"]) == list(range(8))
        m = sc.metrics()
    assert m["salt_windows_computed_total"] == 8


def test_a_damaged_blob_is_missing_then_replaced(tiny_checkpoint: Path, db_url: str, windows: np.ndarray) -> None:
    digests = window_digests(windows[:2])
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        good = sc.soft_labels(windows[:2], k=4)
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE salt_cache SET blob = :b WHERE window_hash = :h AND params LIKE 'labels:%'"),
                         {"b": b"garbage", "h": good.hashes[1]})
        engine.dispose()
        got, meta = by_hash(c, digests, k=4)
        assert json.loads(meta["missing"]) == [1] and got.hashes == good.hashes[:1]
        assert sc.metrics()["salt_cache_bad_blobs_total"] == 1
        again = sc.soft_labels(windows[1:2], k=4)  # the client sends the missing window: recomputed, stored
        got, meta = by_hash(c, digests, k=4)
    assert json.loads(meta["missing"]) == [] and torch.equal(got.ids[1], again.ids[0])


@pytest.mark.parametrize(("body", "headers", "query", "status", "code"), [
    (b"\x00" * 17, OCTETS, "", 422, "bad_hashes"),
    (b"", OCTETS, "", 422, "empty_batch"),
    (b"\x00" * 16 * 5, OCTETS, "", 413, "batch_too_large"),
    (b"\x00" * 16, {"content-type": "application/json"}, "", 415, "unsupported_media_type"),
    (b"\x00" * 16, {}, "", 415, "unsupported_media_type"),
    (b"\x00" * 16, OCTETS, "?k=0", 422, "invalid_request"),
    (b"\x00" * 16, OCTETS, "?k=300", 422, None),
    (b"\x00" * 16, OCTETS, "?temperature=0", 422, "invalid_request"),
    (b"\x00" * 16, OCTETS, "?temperature=nan", 422, "invalid_request"),
    (b"\x00" * 16 * 2000, OCTETS, "", 413, "payload_too_large"),
])
def test_bad_and_oversized_bodies_are_refused(tiny_checkpoint: Path, sqlite_url: str, body: bytes,
                                              headers: dict[str, str], query: str, status: int,
                                              code: str | None) -> None:
    with make_client(tiny_checkpoint, sqlite_url, max_batch_windows=4, max_body_bytes=20_000) as c:
        r = c.post(f"/v1/soft-labels/by-hash{query}", content=body, headers=headers)
        assert_error(r, status, code)


def test_the_client_asks_by_hash_and_sends_only_the_missing(tiny_checkpoint: Path, db_url: str,
                                                            windows: np.ndarray) -> None:
    order = [3, 0, 5, 3, 1, 7, 2, 6, 4, 0]
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        sc.soft_labels(windows[[0, 5]], k=8, temperature=0.5)
        sent: list[list[int]] = []
        got = sc.soft_labels_by_hash(window_digests(windows)[order], lambda at: sent.append(at.tolist())
                                     or windows[order][at], k=8, temperature=0.5)
        m = sc.metrics()
        ref = SelectorClient("http://testserver", http_client=c).soft_labels(windows[order], k=8, temperature=0.5)
    assert sent == [[0, 4, 5, 6, 7, 8]]  # 3, 1, 7, 2, 6, 4: each missing window once
    assert m["salt_windows_computed_total"] == 8
    assert got.hashes == ref.hashes and (got.k, got.temperature) == (8, 0.5)
    for name in ("ids", "logprobs", "tail", "lengths"):
        assert torch.equal(getattr(got, name), getattr(ref, name)), name


def test_sampled_labels_by_hash_route_and_client(tiny_checkpoint: Path, db_url: str, windows: np.ndarray) -> None:
    order = [3, 0, 5, 3, 1]
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        ref = sc.sampled_labels(windows[[0, 5]], draws=8)
        r = c.post("/v1/soft-labels/by-hash?kind=sample&draws=8", content=window_digests(windows)[order].tobytes(),
                   headers=OCTETS)
        assert r.status_code == 200, r.text
        meta = wire_metadata(r.content)
        assert (meta["kind"], meta["draws"], json.loads(meta["missing"])) == ("sample", "8", [0, 3, 4])
        some = decode_sampled_wire(r.content)
        assert some.hashes == ref.hashes  # windows 0 and 5, at positions 1 and 2
        assert torch.equal(some.ids, ref.ids) and torch.equal(some.counts, ref.counts)
        # Another draws count is another key; nothing cached at all answers an empty batch.
        empty = c.post("/v1/soft-labels/by-hash?kind=sample&draws=4", content=window_digests(windows).tobytes(),
                       headers=OCTETS)
        assert json.loads(wire_metadata(empty.content)["missing"]) == list(range(8))
        assert decode_sampled_wire(empty.content).ids.shape[0] == 0
        got = sc.sampled_labels_by_hash(window_digests(windows)[order], windows[order], draws=8)
        full = sc.sampled_labels(windows[order], draws=8)
        for bad, code in (("?kind=sample&k=4", "k_with_sample"), ("?draws=4", "draws_with_topk")):
            assert_error(c.post(f"/v1/soft-labels/by-hash{bad}", content=b"\x00" * 16, headers=OCTETS), 422, code)
        m = sc.metrics()
    assert got.hashes == full.hashes and got.draws == 8 and m["salt_windows_computed_total"] == 4  # 3, 0, 5, 1
    W = got.ids.shape[-1]
    assert torch.equal(got.ids, full.ids[..., :W]) and torch.equal(got.counts, full.counts[..., :W])
    assert not full.counts[..., W:].any()


def test_blobs_answer_the_same_labels_as_arrays(tiny_checkpoint: Path, db_url: str, windows: np.ndarray) -> None:
    order = [6, 1, 6, 2]
    digests = window_digests(windows)[order].tobytes()
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        sc.soft_labels(windows[[1, 6]], k=8)
        sc.sampled_labels(windows[[1, 6]], draws=8)
        for query, decode in (("k=8", decode_wire_blobs), ("kind=sample&draws=8", decode_sampled_wire_blobs)):
            arrays = c.post(f"/v1/soft-labels/by-hash?{query}", content=digests, headers=OCTETS).content
            blobs = c.post(f"/v1/soft-labels/by-hash?{query}&encoding=blobs", content=digests, headers=OCTETS).content
            meta, ref = wire_metadata(blobs), (decode_wire if "k=" in query else decode_sampled_wire)(arrays)
            got, bad = decode(blobs)
            assert bad == [] and meta["encoding"] == "blobs" and json.loads(meta["missing"]) == [3]
            assert {k: v for k, v in meta.items() if k not in ("encoding", "format")} == {
                k: v for k, v in wire_metadata(arrays).items() if k != "format"}
            assert got.hashes == ref.hashes and len(blobs) < len(arrays)
            for name in ("ids", "logprobs", "tail", "counts", "lengths"):
                if hasattr(ref, name):
                    assert torch.equal(getattr(got, name), getattr(ref, name)), (query, name)
        assert_error(c.post("/v1/soft-labels/by-hash?encoding=zip", content=digests, headers=OCTETS), 422,
                     "invalid_request")


def test_a_damaged_blob_sent_to_the_client_is_recomputed(tiny_checkpoint: Path, db_url: str,
                                                         windows: np.ndarray) -> None:
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        good = sc.soft_labels(windows[:3], k=4)
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:  # a flipped byte: the blob no longer matches its checksum
            conn.execute(sa.text("UPDATE salt_cache SET checksum = :c WHERE window_hash = :h AND params LIKE "
                                 "'labels:%'"), {"c": "0" * 32, "h": good.hashes[1]})
        engine.dispose()
        got = sc.soft_labels_by_hash(window_digests(windows[:3]), windows[:3], k=4)  # blobs, checked here
        m = sc.metrics()
        again = sc.soft_labels_by_hash(window_digests(windows[:3]), windows[:3], k=4)
        m2 = sc.metrics()
    assert got.hashes == good.hashes and torch.equal(got.ids, good.ids) and torch.equal(again.ids, good.ids)
    assert m["salt_cache_bad_blobs_total"] == 1 and m["salt_windows_computed_total"] == 4  # found by the service too
    assert m2["salt_windows_computed_total"] == 4  # replaced: every window a hit now
