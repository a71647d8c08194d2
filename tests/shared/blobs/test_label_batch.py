"""Blobs decoded in a batch equal blobs decoded one by one, for every id width and mixed lengths; a damaged
blob or one of another k is reported, never decoded."""

from __future__ import annotations

import numpy as np
import pytest

from shared.blobs.label_batch import unpack_label_batch
from shared.blobs.labels import checksum, pack_labels, unpack_labels


def blob(rng: np.random.Generator, L: int, k: int, vocab: int) -> bytes:
    ids = rng.integers(0, vocab, size=(L, k))
    lp = np.sort(rng.normal(-5, 3, size=(L, k)).astype(np.float16), axis=-1)[:, ::-1]
    return pack_labels(ids, lp, rng.normal(-2, 1, size=L).astype(np.float16), vocab)


@pytest.mark.parametrize("vocab", [200, 4096, 100_000])
def test_a_batch_equals_one_by_one_with_padding_for_mixed_lengths(vocab: int) -> None:
    rng = np.random.default_rng(vocab)
    blobs = [blob(rng, L, 8, vocab) for L in (5, 5, 3, 5, 1)]
    batch, bad = unpack_label_batch(blobs, [checksum(b) for b in blobs], 8)
    assert bad == [] and batch.ids.shape == (5, 5, 8) and batch.lengths.tolist() == [5, 5, 3, 5, 1]
    for i, b in enumerate(blobs):
        ids, lp, tail = unpack_labels(b, checksum(b))
        n = len(tail)
        assert np.array_equal(batch.ids[i, :n], ids) and not batch.ids[i, n:].any()
        assert np.array_equal(batch.logprobs[i, :n].view("<u2"), lp.view("<u2"))  # bit for bit
        assert np.array_equal(batch.tail[i, :n].view("<u2"), tail.view("<u2"))
    same, _ = unpack_label_batch(blobs[:2], [checksum(b) for b in blobs[:2]], 8)  # one layout: no padding
    assert np.array_equal(same.ids, batch.ids[:2]) and np.array_equal(same.logprobs, batch.logprobs[:2])


def test_damaged_and_foreign_blobs_are_reported_not_decoded() -> None:
    rng = np.random.default_rng(0)
    blobs = [blob(rng, 4, 8, 300) for _ in range(3)] + [blob(rng, 4, 4, 300)]
    sums = [checksum(b) for b in blobs]
    flipped = bytearray(blobs[1])
    flipped[len(flipped) // 2] ^= 1
    blobs[1] = bytes(flipped)
    blobs[2] = b"not zstd"
    sums[2] = checksum(blobs[2])
    batch, bad = unpack_label_batch(blobs, sums, 8)
    assert bad == [1, 2, 3] and batch.ids.shape == (1, 4, 8)
    assert np.array_equal(batch.ids[0], unpack_labels(blobs[0], sums[0])[0])
    empty, bad = unpack_label_batch([], [], 8)
    assert empty.ids.shape[0] == 0 and bad == []


def v1_blob(rng: np.random.Generator, L: int, k: int) -> bytes:
    """A label blob as the release before layout 2 wrote it: u2 ids, all byte-shuffled, zstd."""
    import struct

    import zstandard

    def shuffle(a: np.ndarray) -> bytes:
        return np.frombuffer(a.tobytes(), np.uint8).reshape(-1, a.dtype.itemsize).T.tobytes()

    ids = rng.integers(0, 4096, size=(L, k)).astype("<u2")
    bits = np.sort(rng.normal(-5, 3, size=(L, k)).astype(np.float16), axis=-1)[:, ::-1].copy().view("<u2")
    delta = np.diff(bits, axis=-1, prepend=np.zeros((L, 1), "<u2")).astype("<u2")  # mod 2^16
    tail = rng.normal(-2, 1, size=L).astype("<f2")
    raw = struct.pack("<4sBHI", b"SLB1", 2, k, L) + shuffle(ids) + shuffle(delta) + shuffle(tail)
    return zstandard.ZstdCompressor().compress(raw)


def test_old_and_new_layouts_decode_together_as_one_by_one() -> None:
    rng = np.random.default_rng(7)
    blobs = [v1_blob(rng, 5, 8), blob(rng, 5, 8, 4096), v1_blob(rng, 3, 8), blob(rng, 4, 8, 4096)]
    batch, bad = unpack_label_batch(blobs, [checksum(b) for b in blobs], 8)
    assert bad == [] and batch.lengths.tolist() == [5, 5, 3, 4]
    for i, b in enumerate(blobs):
        ids, lp, tail = unpack_labels(b, checksum(b))
        n = len(tail)
        assert np.array_equal(batch.ids[i, :n], ids) and np.array_equal(batch.logprobs[i, :n].view("<u2"),
                                                                        lp.view("<u2"))
        assert np.array_equal(batch.tail[i, :n].view("<u2"), tail.view("<u2"))


@pytest.mark.parametrize("vocab", [300, 8192, 131_072])
def test_both_id_codings_of_layout_two_decode_in_one_batch_as_one_by_one(vocab: int) -> None:
    """Skewed ids compress best as whole bytes, random ids as packed bits: a batch holds both codings."""
    import zstandard

    rng = np.random.default_rng(vocab)
    skewed = [pack_labels(np.minimum(rng.geometric(0.3, size=(6, 8)), vocab - 1), np.zeros((6, 8), np.float16),
                          rng.normal(-2, 1, size=6).astype(np.float16), vocab) for _ in range(3)]
    blobs = [blob(rng, 6, 8, vocab), *skewed, blob(rng, 6, 8, vocab)]
    codings = {zstandard.ZstdDecompressor().decompress(b)[4 + 1] for b in blobs}  # b"SLB", version, kind, coding
    assert codings == {0, 1}  # packed bits and whole bytes both present
    batch, bad = unpack_label_batch(blobs, [checksum(b) for b in blobs], 8)
    assert bad == []
    for i, b in enumerate(blobs):
        ids, lp, tail = unpack_labels(b, checksum(b))
        assert np.array_equal(batch.ids[i], ids) and batch.ids.dtype == ids.dtype
        assert np.array_equal(batch.logprobs[i].view("<u2"), lp.view("<u2"))
        assert np.array_equal(batch.tail[i].view("<u2"), tail.view("<u2"))
