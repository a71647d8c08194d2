"""The wire format of soft labels: a round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shared.blobs.labels import checksum, pack_labels
from shared.labels import TAIL_FLOOR
from shared.wire import (
    WIRE_FORMAT,
    decode_blobs_wire,
    decode_sampled_wire,
    decode_wire,
    decode_wire_blobs,
    encode_blobs_wire,
    encode_sampled_wire,
    encode_wire,
    wire_metadata,
)


def test_wire_roundtrip() -> None:
    ids = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    lp = -np.ones((2, 3, 4), dtype=np.float16)
    tail = np.full((2, 3), TAIL_FLOOR, dtype=np.float16)
    data = encode_wire(ids, lp, tail, np.array([3, 2]), vocab_size=100,
                       metadata={"k": "4", "temperature": "1.0", "hashes": '["a", "b"]'})
    sl = decode_wire(data)
    assert sl.ids.dtype == torch.int64 and torch.equal(sl.ids, torch.from_numpy(ids))
    assert sl.logprobs.dtype == torch.float32 and sl.tail.shape == (2, 3)
    assert sl.hashes == ["a", "b"] and sl.k == 4 and sl.lengths.tolist() == [3, 2]


def test_every_float16_decodes_to_its_exact_float32_and_the_metadata_reads_alone() -> None:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # every bit pattern, NaNs and subnormals too
    lp = np.resize(every, (3, 1 << 14, 2))  # 98,304 values: several conversion chunks
    tail = np.resize(every[::-1], (3, 1 << 14))
    meta = {"k": "2", "temperature": "0.5", "hashes": "[]", "model": "m"}
    data = encode_wire(np.zeros((3, 1 << 14, 2), dtype=np.int64), lp, tail, np.full(3, 1 << 14), vocab_size=8,
                       metadata=meta)
    sl = decode_wire(data)
    np.testing.assert_array_equal(sl.logprobs.numpy(), lp.astype(np.float32))  # NaN where NaN, else equal
    np.testing.assert_array_equal(sl.tail.numpy(), tail.astype(np.float32))
    assert wire_metadata(data) == {"format": WIRE_FORMAT, "kind": "topk", **meta}


def _meta(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n])["__metadata__"]


def test_sampled_roundtrip_and_kinds_are_not_mixed() -> None:
    ids = np.array([[[4, 9], [2, 0]]])
    counts = np.array([[[3, 1], [4, 0]]])
    data = encode_sampled_wire(ids, counts, np.array([2]), vocab_size=70_000,
                               metadata={"draws": "4", "temperature": "1.0", "hashes": '["h"]'})
    sl = decode_sampled_wire(data)
    assert torch.equal(sl.ids, torch.from_numpy(ids)) and torch.equal(sl.counts, torch.from_numpy(counts))
    assert sl.draws == 4 and sl.hashes == ["h"] and sl.lengths.tolist() == [2]
    assert _meta(data)["kind"] == "sample" and _meta(data)["format"] == WIRE_FORMAT
    with pytest.raises(ValueError, match="'sample' labels payload where 'topk'"):
        decode_wire(data)


def test_version_one_payloads_are_read_and_version_two_says_its_format() -> None:
    data = encode_wire(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), np.zeros((1, 1)), np.array([1]), vocab_size=10,
                       metadata={"k": "1", "temperature": "1.0"})
    assert _meta(data)["format"] == "salt-softlabels-v2"  # a v1 decoder compares it with its own and refuses
    v1 = data.replace(b'"kind":"topk",', b" " * 14).replace(b"salt-softlabels-v2", b"salt-softlabels-v1")
    assert _meta(v1)["format"] == "salt-softlabels-v1"
    assert decode_wire(v1).k == 1
    with pytest.raises(ValueError, match="not a salt-softlabels-v2 payload"):
        decode_wire(data.replace(b"salt-softlabels-v2", b"salt-softlabels-v9"))


def test_blobs_round_trip_and_a_cut_that_does_not_add_up_is_refused() -> None:
    rng = np.random.default_rng(0)
    stored = []
    for L in (5, 3):  # windows of two lengths: padded to the longer, as arrays are
        ids = rng.integers(0, 300, (L, 4)).astype("<u2")
        lp = np.sort(rng.normal(-3, 1, (L, 4)), axis=-1)[:, ::-1].astype("<f2")
        stored.append((ids, lp, np.full(L, -2.0, "<f2")))
    blobs = [pack_labels(*s, vocab_size=300) for s in stored]
    sums = [checksum(b) for b in blobs]
    meta = {"kind": "topk", "k": "4", "temperature": "1.0", "hashes": json.dumps(["a", "b"])}
    data = encode_blobs_wire(blobs, sums, metadata=meta)
    got_meta, got_blobs, got_sums = decode_blobs_wire(data, "topk")
    assert (got_blobs, got_sums, got_meta["encoding"]) == (blobs, sums, "blobs")
    labels, bad = decode_wire_blobs(data)
    assert bad == [] and labels.ids.shape == (2, 5, 4) and labels.lengths.tolist() == [5, 3]
    assert labels.ids[1, :3].tolist() == stored[1][0].tolist() and not labels.ids[1, 3:].any()
    assert torch.equal(labels.logprobs[0], torch.from_numpy(stored[0][1].astype(np.float32)))
    damaged, bad = decode_wire_blobs(encode_blobs_wire(blobs, [sums[0], "0" * 32], metadata=meta))
    assert bad == [1] and damaged.hashes == ["a"] and damaged.ids.shape[0] == 1
    with pytest.raises(ValueError, match="encoded as 'blobs'"):
        decode_wire(data)
    with pytest.raises(ValueError, match="encoded as 'arrays'"):
        decode_wire_blobs(encode_wire(*(np.zeros((1, 1, 4)),) * 2, np.zeros((1, 1)), np.ones(1), vocab_size=8,
                                      metadata={"k": "4", "temperature": "1.0"}))
    with pytest.raises(ValueError, match="2 hashes for 1 windows"):
        decode_wire_blobs(encode_blobs_wire(blobs[:1], sums[:1], metadata=meta))
    head = int.from_bytes(data[:8], "little")
    body = bytearray(data)
    off_at = 8 + head + len(b"".join(blobs)) + 32  # blobs, then checksums (2 x 16), then offsets (sorted names)
    body[off_at + 8 : off_at + 16] = (10**6).to_bytes(8, "little")  # blob 0 ends past the data
    with pytest.raises(ValueError, match="do not match"):
        decode_blobs_wire(bytes(body), "topk")
