"""Soft-label blobs: round trips, id codings and checksums."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import numpy as np
import pytest
import torch
import zstandard

from shared.blobs import bitpack
from shared.blobs import labels as codec
from shared.blobs.bitpack import id_bits, native, pack_bits, pack_bits_numpy, unpack_bits, unpack_rows
from shared.blobs.labels import BlobError, checksum, pack_labels, pack_sampled, unpack_labels, unpack_sampled
from shared.labels import TAIL_FLOOR
from shared.sampling import sample_labels, trim


def test_label_blob_roundtrip_and_checksum() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 300, (32, 8))
    lp = rng.normal(-5, 1, (32, 8)).astype(np.float16)
    tail = rng.normal(-1, 0.1, 32).astype(np.float16)
    blob = pack_labels(ids, lp, tail, vocab_size=300)
    a, b, c = unpack_labels(blob, checksum(blob))
    assert a.dtype == np.uint16
    np.testing.assert_array_equal(a, ids)
    np.testing.assert_array_equal(b, lp)
    np.testing.assert_array_equal(c, tail)
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(BlobError):
        unpack_labels(bytes(bad), checksum(blob))


@pytest.mark.parametrize("vocab", [200, 70_000])
def test_label_blob_roundtrip_other_id_widths(vocab: int) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, vocab, (5, 3))
    lp = np.array([[-0.5, -2.0, -60000.0]] * 5, dtype=np.float16)
    tail = np.full(5, TAIL_FLOOR, dtype=np.float16)
    blob = pack_labels(ids, lp, tail, vocab_size=vocab)
    a, b, c = unpack_labels(blob, checksum(blob))
    assert a.dtype.itemsize == (1 if vocab <= 256 else 4)
    np.testing.assert_array_equal(a, ids)
    np.testing.assert_array_equal(b, lp)
    np.testing.assert_array_equal(c, tail)


# A layout-1 blob (ids as whole uint16s) as the cache wrote it before layout 2: ids [[5, 299], [7, 1],
# [0, 250]], log-probs [[-0.5, -2], [-0.25, -3], [-1, -1.5]], tail [-1, -2, -0.5], vocabulary 300.
V1_BLOB = bytes.fromhex("28b52ffd2029490100534c423102020003000000052b070100fa000100000000000000000000b808b40ebc02"
                        "000000bcc0b8")


def test_layout_one_rows_stay_readable() -> None:
    ids, lp, tail = unpack_labels(V1_BLOB, checksum(V1_BLOB))
    assert ids.tolist() == [[5, 299], [7, 1], [0, 250]]
    assert lp.tolist() == [[-0.5, -2.0], [-0.25, -3.0], [-1.0, -1.5]]
    assert tail.tolist() == [-1.0, -2.0, -0.5]


def test_ids_take_the_fewest_bits() -> None:
    assert [id_bits(v) for v in (2, 256, 257, 8192, 50_000, 131_072, 131_073)] == [1, 8, 9, 13, 16, 17, 18]
    rng = np.random.default_rng(2)
    for bits in (1, 5, 13, 17, 32):
        values = rng.integers(0, 1 << bits, 101, dtype=np.uint64)
        data = pack_bits(values, bits)
        assert len(data) == (101 * bits + 7) // 8
        np.testing.assert_array_equal(unpack_bits(data, bits, 101), values.astype(np.int64))
    with pytest.raises(ValueError):
        unpack_bits(b"\x00", 13, 1)
    # 17-bit ids: a top-32 blob of random ids is about 17/32 of the 32-bit layout-1 blob's id bytes.
    ids = rng.integers(0, 131_072, (64, 32))
    lp = np.zeros((64, 32), dtype=np.float16)
    blob = pack_labels(ids, lp, np.zeros(64, dtype=np.float16), vocab_size=131_072)
    assert len(blob) < 64 * 32 * 17 / 8 + 200
    np.testing.assert_array_equal(unpack_labels(blob, checksum(blob))[0], ids)


def reference_pack_bits(values: np.ndarray, bits: int) -> bytes:
    """The packing spelled out bit by bit: bit b of value i is bit i * bits + b of the stream."""
    out = bytearray((len(values) * bits + 7) // 8)
    for i, v in enumerate(int(x) for x in values):
        for b in range(bits):
            if v >> b & 1:
                pos = i * bits + b
                out[pos // 8] |= 1 << (pos % 8)
    return bytes(out)


@pytest.mark.parametrize("pack", [pack_bits, pack_bits_numpy], ids=["default", "numpy"])
def test_packed_ids_match_the_bit_by_bit_reference(pack: Callable[[np.ndarray, int], bytes]) -> None:
    rng = np.random.default_rng(4)
    for bits in (1, 2, 7, 8, 9, 12, 13, 16, 17, 24, 25, 31, 32):
        for n in (0, 1, 3, 8, 9, 64, 203):
            values = rng.integers(0, 1 << bits, n, dtype=np.int64)
            assert pack(values, bits) == reference_pack_bits(values, bits), (bits, n)
            assert pack(values.astype(np.uint32), bits) == pack(values, bits)  # any integer dtype
            assert pack(values.reshape(1, -1)[:, ::-1], bits) == pack(values[::-1].copy(), bits)  # any layout
    high = np.array([5 + (1 << 13), 3 + (7 << 20)])  # bits above the width are dropped
    assert pack(high, 13) == reference_pack_bits(np.array([5, 3]), 13)


def test_the_c_packer_is_built_where_a_compiler_is() -> None:
    """The project's install compiles the extension when gcc is present, as on CI and in the image."""
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler: the numpy packer runs, which the test above checks")
    assert native()
    with pytest.raises(ValueError, match="bits"):
        bitpack._bitpack.pack_bits(np.zeros(3, np.uint64), 33)
    with pytest.raises(ValueError, match="uint64"):
        bitpack._bitpack.pack_bits(b"\x00" * 7, 8)


def test_rows_of_packed_ids_unpack_at_once_for_every_width_and_partial_groups() -> None:
    rng = np.random.default_rng(3)
    for bits in (1, 7, 13, 17, 25, 26, 32):
        for n in (1, 5, 8, 101):
            values = rng.integers(0, 1 << bits, (3, n), dtype=np.uint64)
            rows = np.stack([np.frombuffer(pack_bits(v, bits), np.uint8) for v in values])
            np.testing.assert_array_equal(unpack_rows(rows, bits, n), values)


def test_sampled_blob_roundtrip_and_damage() -> None:
    ids = np.array([[9, 4, 0], [3, 0, 0], [1, 2, 8]])
    counts = np.array([[5, 3, 0], [8, 0, 0], [4, 2, 2]])
    blob = pack_sampled(ids, counts, draws=8, vocab_size=70_000)
    a, c = unpack_sampled(blob, checksum(blob))
    np.testing.assert_array_equal(a, ids)
    np.testing.assert_array_equal(c, counts)
    assert c.dtype == np.uint8
    with pytest.raises(BlobError):
        unpack_labels(blob, checksum(blob))  # a sampled blob is never read as top-k
    top = pack_labels(ids, np.zeros((3, 3), np.float16), np.zeros(3, np.float16), vocab_size=70_000)
    with pytest.raises(BlobError):
        unpack_sampled(top, checksum(top))
    wrong = pack_sampled(ids, counts, draws=7, vocab_size=70_000)  # counts that do not add up to 7 each
    with pytest.raises(BlobError):
        unpack_sampled(wrong, checksum(wrong))


@pytest.mark.parametrize("coding", [codec.PACKED, codec.BYTES])
def test_both_id_codings_round_trip(coding: int) -> None:
    """Packed bits (0) and whole bytes (1, sampled ids as differences within a position) give back the labels."""
    torch.manual_seed(6)
    ids, counts = sample_labels(torch.randn(1, 40, 3000) * 3, 32, 1.0, np.array([9], dtype=np.uint64))
    ids_np, counts_np = trim(ids[0].numpy(), counts[0].numpy())
    blob = pack_sampled(ids_np, counts_np, 32, vocab_size=3000, coding=coding)
    assert zstandard.ZstdDecompressor().decompress(blob)[5] == coding
    a, c = unpack_sampled(blob, checksum(blob))
    np.testing.assert_array_equal(a, ids_np)
    np.testing.assert_array_equal(c, counts_np)
    top = np.argsort(-np.random.default_rng(3).random((40, 8)), axis=-1) * 300
    lp = np.sort(np.random.default_rng(4).normal(-3, 1, (40, 8)), axis=-1)[:, ::-1].astype(np.float16)
    blob = pack_labels(top, lp, np.zeros(40, np.float16), vocab_size=3000, coding=coding)
    assert zstandard.ZstdDecompressor().decompress(blob)[5] == coding
    got = unpack_labels(blob, checksum(blob))
    np.testing.assert_array_equal(got[0], top)
    np.testing.assert_array_equal(got[1], lp)


def test_the_smaller_coding_is_kept() -> None:
    rng = np.random.default_rng(5)
    frequent = np.sort(rng.choice(40, (64, 4), replace=True), axis=-1)  # a few frequent ids
    counts = np.full((64, 4), 2)
    random_ids = rng.integers(0, 1 << 17, (64, 32))  # random 17-bit ids
    lp, tail = np.zeros((64, 32), np.float16), np.zeros(64, np.float16)

    def sizes(coding: int | None) -> list[int]:
        return [len(pack_sampled(frequent, counts, 8, 1 << 17, coding=coding)),
                len(pack_labels(random_ids, lp, tail, 1 << 17, coding=coding))]

    chosen = sizes(None)
    forced = [sizes(codec.PACKED), sizes(codec.BYTES)]
    assert chosen == [min(forced[0][0], forced[1][0]), min(forced[0][1], forced[1][1])]
    assert forced[1][0] < forced[0][0] and forced[0][1] < forced[1][1]  # each coding wins somewhere
    with pytest.raises(ValueError, match="coding"):
        pack_labels(random_ids, lp, tail, 1 << 17, coding=2)


def test_the_packer_tries_both_codings_on_every_nth_blob_and_keeps_the_winner() -> None:
    """Between tries each blob takes the last winner's coding; each kind has its own; every blob reads back."""
    rng = np.random.default_rng(7)
    random_ids = rng.integers(0, 1 << 17, (16, 8))  # packed bits win
    skewed_ids = np.minimum(rng.geometric(0.3, (16, 8)), 100)  # whole bytes win
    lp, tail = np.zeros((16, 8), np.float16), np.zeros(16, np.float16)
    sample_ids, sample_counts = np.sort(rng.choice(40, (16, 4)), axis=-1), np.full((16, 4), 2)
    packer = codec.Packer(1 << 17, probe_every=3)
    windows = [random_ids, skewed_ids, skewed_ids, skewed_ids, skewed_ids, random_ids, random_ids]
    got = []
    for i, ids in enumerate(windows):
        blob = packer.labels(ids, lp, tail)
        got.append(zstandard.ZstdDecompressor().decompress(blob)[5])
        assert blob == pack_labels(ids, lp, tail, 1 << 17, coding=got[-1])
        np.testing.assert_array_equal(unpack_labels(blob, checksum(blob))[0], ids)
        if i == 1:  # the sampled kind keeps its own count and winner
            sampled = packer.sampled(sample_ids, sample_counts, 8)
            assert sampled == pack_sampled(sample_ids, sample_counts, 8, 1 << 17)
    P, B = codec.PACKED, codec.BYTES
    # tries at blobs 0, 3 and 6: blob 0 (random) -> packed for 1, 2; blob 3 (skewed) -> bytes for 4, 5; blob 6.
    assert got == [P, P, P, B, B, B, P]
    with pytest.raises(ValueError, match="probe_every"):
        codec.Packer(1 << 17, probe_every=0)
