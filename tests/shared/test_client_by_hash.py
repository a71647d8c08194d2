"""The client's requests by hash over a mock service: each replica's /v1/model read once before its first
request, only the missing windows sent, and every tampered answer refused (both client kinds)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from shared.blobs.labels import checksum, pack_labels, pack_sampled
from shared.client import SelectorClient, SelectorError
from shared.hashing import window_digests, window_hash
from shared.wire import WIRE_MEDIA_TYPE, encode_blobs_wire, encode_sampled_wire, encode_wire
from tests.shared.test_client import KINDS, Mocked

WINDOWS = np.array([[1, 2, 3], [4, 5, 6], [1, 2, 3], [7, 0, 1]], dtype=np.int64)
HASHES = [window_hash(w) for w in WINDOWS]
INFO = {"fingerprint": "F", "precision": "fp32"}


def labels_of(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A window's made-up labels, k = 2: (L, 2) ids, (L, 2) log-probs, (L,) tail."""
    ids = np.stack([w[1:], w[:-1]], axis=-1)
    return ids, -ids.astype(np.float32) / 8, np.full(len(w) - 1, -3.0)


def blob_of(w: np.ndarray) -> bytes:
    """A window's made-up labels as the cache stores them."""
    ids, lp, tail = labels_of(w)
    return pack_labels(ids.astype("<u2"), lp.astype("<f2"), tail.astype("<f2"), vocab_size=8)


def answer(rows: list[np.ndarray], hashes: list[str], meta: dict[str, str], blobs: bool = False,
           damaged: int | None = None) -> httpx.Response:
    """Labels of ``rows`` as arrays, or as stored blobs (the one at ``damaged`` with a wrong checksum)."""
    base = {"model": "F", "precision": "fp32", "k": "2", "temperature": "1.0", "hashes": json.dumps(hashes)}
    if blobs:
        stored = [blob_of(w) for w in rows]
        sums = [("00" * 16 if i == damaged else checksum(b)) for i, b in enumerate(stored)]
        content = encode_blobs_wire(stored, sums, metadata={"kind": "topk"} | base | meta)
        return httpx.Response(200, content=content, headers={"Content-Type": WIRE_MEDIA_TYPE})
    if rows:
        parts = [labels_of(w) for w in rows]
        ids, lp, tail = (np.stack([p[j] for p in parts]) for j in range(3))
    else:
        ids, lp, tail = np.zeros((0, 0, 2)), np.zeros((0, 0, 2)), np.zeros((0, 0))
    content = encode_wire(ids, lp, tail, np.full(len(rows), 2), vocab_size=8, metadata=base | meta)
    if meta.get("kind", "topk") != "topk":  # encode_wire always says topk: another kind is put in by hand
        content = content.replace(b'"kind":"topk"', b'"kind":"' + meta["kind"][:4].encode() + b'"')
    return httpx.Response(200, content=content, headers={"Content-Type": WIRE_MEDIA_TYPE})


class Service:
    """Windows 0 and 2 (one hash) cached; ``tamper`` changes one metadata field of the answer it names."""

    def __init__(self, tamper: tuple[str, dict[str, str]] | None = None, info: dict[str, Any] | None = None,
                 damaged: int | None = None) -> None:
        self.seen: list[tuple[str, str, Any]] = []
        self.tamper = tamper
        self.info = info or {}
        self.damaged = damaged

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        self.seen.append((host, path, request.content))
        if path == "/v1/model":
            return httpx.Response(200, json=INFO | self.info.get(host, {}))
        extra = self.tamper[1] if self.tamper and self.tamper[0] == path else {}
        if path == "/v1/soft-labels/by-hash":
            asked = [request.content[i : i + 16].hex() for i in range(0, len(request.content), 16)]
            cached = [i for i, h in enumerate(asked) if h == HASHES[0]]
            missing = [i for i in range(len(asked)) if i not in cached]
            return answer([WINDOWS[0] for _ in cached], [asked[i] for i in cached],
                          {"missing": json.dumps(missing), "count": str(len(asked)), "kind": "topk", **extra},
                          blobs=request.url.params.get("encoding") == "blobs", damaged=self.damaged)
        windows = [np.array(w) for w in json.loads(request.content)["windows"]]
        return answer(windows, [window_hash(w) for w in windows], extra)


@pytest.mark.parametrize("blobs", [True, False], ids=["blobs", "arrays"])
@pytest.mark.parametrize("kind", KINDS)
def test_only_missing_windows_are_sent_and_the_batch_is_in_order(kind: str, blobs: bool) -> None:
    svc = Service()
    asked_for: list[list[int]] = []

    def windows(positions: np.ndarray) -> np.ndarray:
        asked_for.append(positions.tolist())
        return WINDOWS[positions]

    c = Mocked(kind, svc, ["http://a", "http://b"])
    got = c.soft_labels_by_hash(window_digests(WINDOWS), windows, k=2, blobs=blobs)
    assert got.hashes == HASHES and asked_for == [[1, 3]]
    assert svc.seen[1][1] == "/v1/soft-labels/by-hash"
    for i, w in enumerate(WINDOWS):
        assert got.ids[i].tolist() == labels_of(w)[0].tolist()
    assert [json.loads(body)["windows"] for _, p, body in svc.seen if p == "/v1/soft-labels"] == [
        WINDOWS[[1, 3]].tolist()]
    np.testing.assert_allclose(got.logprobs[0].numpy(), labels_of(WINDOWS[0])[1], atol=1e-3)
    # Each replica's /v1/model once, before the first request to it; hex hashes and an array work alike.
    c.soft_labels_by_hash(HASHES, WINDOWS, k=2, blobs=blobs)
    c.soft_labels_by_hash(HASHES[:1], WINDOWS[:1], k=2, blobs=blobs)
    assert [(h, p) for h, p, _ in svc.seen] == [
        ("a", "/v1/model"), ("a", "/v1/soft-labels/by-hash"), ("b", "/v1/model"), ("b", "/v1/soft-labels"),
        ("a", "/v1/soft-labels/by-hash"), ("b", "/v1/soft-labels"), ("a", "/v1/soft-labels/by-hash")]


@pytest.mark.parametrize("kind", KINDS)
def test_a_blob_that_fails_its_checksum_here_is_sent_again_as_a_window(kind: str) -> None:
    svc = Service(damaged=1)  # the second cached copy (position 2) fails
    got = Mocked(kind, svc, "http://a").soft_labels_by_hash(HASHES, WINDOWS, k=2)
    assert got.hashes == HASHES
    for i, w in enumerate(WINDOWS):
        assert got.ids[i].tolist() == labels_of(w)[0].tolist()
    # Position 2 has window 0's hash: sent once with the missing ones, so the service recomputes its blob.
    assert [json.loads(body)["windows"] for _, p, body in svc.seen if p == "/v1/soft-labels"] == [
        WINDOWS[[1, 2, 3]].tolist()]


TAMPERED = [
    ("/v1/soft-labels/by-hash", {"model": "G"}), ("/v1/soft-labels/by-hash", {"precision": "bf16"}),
    ("/v1/soft-labels/by-hash", {"k": "3"}), ("/v1/soft-labels/by-hash", {"temperature": "2.0"}),
    ("/v1/soft-labels/by-hash", {"kind": "sample"}), ("/v1/soft-labels/by-hash", {"hashes": json.dumps(HASHES[1:3])}),
    ("/v1/soft-labels/by-hash", {"missing": "[3, 1]"}), ("/v1/soft-labels/by-hash", {"count": "5"}),
    ("/v1/soft-labels", {"model": "G"}), ("/v1/soft-labels", {"hashes": json.dumps(HASHES[3:0:-2])}),
    ("/v1/soft-labels", {"temperature": "0.5"}),
]


@pytest.mark.parametrize("blobs", [True, False], ids=["blobs", "arrays"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tamper", TAMPERED, ids=[f"{p.rsplit('/', 1)[1]}-{next(iter(m))}" for p, m in TAMPERED])
def test_a_tampered_answer_is_refused(kind: str, tamper: tuple[str, dict[str, str]], blobs: bool) -> None:
    with pytest.raises(SelectorError) as e:
        Mocked(kind, Service(tamper), "http://a").soft_labels_by_hash(HASHES, WINDOWS, k=2, blobs=blobs)
    assert e.value.code == "bad_answer" and "does not match the request" in str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_stale_digests_and_differing_replicas_are_refused(kind: str) -> None:
    stale = list(HASHES)
    stale[1] = "00" * 16  # the service hashes the window it is sent: not what the client was told
    with pytest.raises(SelectorError, match="other windows than asked"):
        Mocked(kind, Service(), "http://a").soft_labels_by_hash(stale, WINDOWS, k=2)
    svc = Service(info={"b": {"fingerprint": "G"}})
    with pytest.raises(SelectorError) as e:
        Mocked(kind, svc, ["http://a", "http://b"]).soft_labels_by_hash(HASHES, WINDOWS, k=2)
    assert e.value.code == "replicas_differ"


def test_malformed_digests_are_refused_before_any_request() -> None:
    svc = Service()
    c = Mocked("sync", svc, "http://a")
    for bad in (np.zeros((2, 8), np.uint8), b"\x00" * 17, ["ab"]):
        with pytest.raises(ValueError):
            c.soft_labels_by_hash(bad, WINDOWS[:2], k=2)
    assert svc.seen == []


def sampled_of(w: np.ndarray, wide: bool) -> tuple[np.ndarray, np.ndarray]:
    """A window's made-up sampled labels, 4 draws: (L, 2) ids and counts when ``wide``, else (L, 1)."""
    if wide:
        return np.stack([w[1:], w[:-1]], axis=-1), np.tile([3, 1], (len(w) - 1, 1))
    return w[1:, None], np.full((len(w) - 1, 1), 4)


class SampledService:
    """Sampled labels, 4 draws: window hash 0 cached (1 id per position), the others computed (2 ids)."""

    def __init__(self, tamper: dict[str, str] | None = None) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.tamper = tamper or {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.seen.append((path, dict(request.url.params)))
        if path == "/v1/model":
            return httpx.Response(200, json=INFO)
        if path == "/v1/soft-labels/by-hash":
            asked = [request.content[i : i + 16].hex() for i in range(0, len(request.content), 16)]
            cached = [i for i, h in enumerate(asked) if h == HASHES[0]]
            missing = [i for i in range(len(asked)) if i not in cached]
            rows, hashes, wide = [WINDOWS[0] for _ in cached], [asked[i] for i in cached], False
            meta = {"missing": json.dumps(missing), "count": str(len(asked))} | self.tamper
        else:
            rows = [np.array(w) for w in json.loads(request.content)["windows"]]
            hashes, wide, meta = [window_hash(w) for w in rows], True, {}
        parts = [sampled_of(w, wide) for w in rows]
        base = {"model": "F", "precision": "fp32", "draws": "4", "temperature": "1.0", "hashes": json.dumps(hashes)}
        if request.url.params.get("encoding") == "blobs":
            stored = [pack_sampled(ids, counts, 4, vocab_size=8) for ids, counts in parts]
            sums = [checksum(b) for b in stored]
            content = encode_blobs_wire(stored, sums, metadata={"kind": "sample"} | base | meta)
            return httpx.Response(200, content=content, headers={"Content-Type": WIRE_MEDIA_TYPE})
        W = 2 if wide else 1
        ids = np.stack([p[0] for p in parts]) if parts else np.zeros((0, 0, W))
        counts = np.stack([p[1] for p in parts]) if parts else np.zeros((0, 0, W))
        content = encode_sampled_wire(ids, counts, np.full(len(rows), 2), vocab_size=8, metadata=base | meta)
        return httpx.Response(200, content=content, headers={"Content-Type": WIRE_MEDIA_TYPE})


@pytest.mark.parametrize("blobs", [True, False], ids=["blobs", "arrays"])
def test_sampled_labels_by_hash_send_only_the_missing_windows_and_pad_to_the_widest(blobs: bool) -> None:
    svc = SampledService()
    c = SelectorClient("http://a", http_client=httpx.Client(transport=httpx.MockTransport(svc)))
    got = c.sampled_labels_by_hash(window_digests(WINDOWS), WINDOWS, draws=4, blobs=blobs)
    assert got.hashes == HASHES and got.ids.shape == (4, 2, 2) and got.draws == 4
    assert [p for p, _ in svc.seen] == ["/v1/model", "/v1/soft-labels/by-hash", "/v1/soft-labels"]
    assert svc.seen[1][1] == {"kind": "sample", "draws": "4", "temperature": "1.0",
                              "encoding": "blobs" if blobs else "arrays"}
    for i, w in enumerate(WINDOWS):
        ids, counts = sampled_of(w, wide=i not in (0, 2))  # 0 and 2 share the cached hash
        W = ids.shape[1]
        assert got.ids[i, :, :W].tolist() == ids.tolist() and got.counts[i, :, :W].tolist() == counts.tolist()
        assert not got.counts[i, :, W:].any() and int(got.counts[i].sum()) == 8
    for tamper in ({"draws": "5"}, {"model": "G"}, {"temperature": "2.0"}, {"hashes": json.dumps(HASHES[1:2])}):
        transport = httpx.MockTransport(SampledService(tamper))
        bad = SelectorClient("http://a", http_client=httpx.Client(transport=transport))
        with pytest.raises(SelectorError) as e:
            bad.sampled_labels_by_hash(HASHES, WINDOWS, draws=4, blobs=blobs)
        assert e.value.code == "bad_answer"


class TorchOps(TorchDispatchMode):
    """The names of the torch ops run on this thread while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


WRAPPING = {"lift_fresh", "view", "alias", "detach"}
"""Ops that wrap numpy memory as tensors without computing (``torch.from_numpy`` and its views)."""


@pytest.mark.parametrize("blobs", [True, False], ids=["blobs", "arrays"])
def test_answers_are_decoded_and_merged_without_a_torch_op(blobs: bool) -> None:
    """Labels are decoded on the trainer's prefetch thread; with torch ops there every training step got about
    10% slower on 2 cores, its compute threads sleeping and waking (``shared.wire._float32``). A partial hit
    runs every step of the path: the hits decoded, the missing windows' labels decoded, the two merged."""
    topk = SelectorClient("http://a", http_client=httpx.Client(transport=httpx.MockTransport(Service())))
    sampled = SelectorClient("http://a", http_client=httpx.Client(transport=httpx.MockTransport(SampledService())))
    with TorchOps() as ops:
        got = topk.soft_labels_by_hash(window_digests(WINDOWS), WINDOWS, k=2, blobs=blobs)
        drawn = sampled.sampled_labels_by_hash(window_digests(WINDOWS), WINDOWS, draws=4, blobs=blobs)
    assert ops.names <= WRAPPING, f"torch ops on the decoding thread: {sorted(ops.names - WRAPPING)}"
    assert got.logprobs.dtype == torch.float32 and got.ids.dtype == torch.int64 and drawn.counts.dtype == torch.int64
    assert [got.ids[i].tolist() for i in range(4)] == [labels_of(w)[0].tolist() for w in WINDOWS]
