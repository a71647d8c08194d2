"""Ids in the fewest bits a vocabulary needs (17 bits up to 131,072 ids), packed end to end.

Packing runs in the optional C extension ``shared.blobs._bitpack`` when it is built (``native()``), else in
numpy (``pack_bits_numpy``); both give the same bytes. Unpacking is numpy's, many rows at once.
"""

from __future__ import annotations

import numpy as np

try:
    from shared.blobs import _bitpack  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: numpy packs instead
    _bitpack = None


def native() -> bool:
    """Whether ids are packed by the C extension (``pip install`` with a C compiler present)."""
    return _bitpack is not None


def id_bits(vocab_size: int) -> int:
    """Bits per id: ceil(log2(vocab_size)), at least 1."""
    return max(1, (vocab_size - 1).bit_length())


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Each value's low ``bits`` bits (1 to 32), least significant first, end to end; the last byte zero-padded
    (the C extension's packing when built, else ``pack_bits_numpy``'s: the same bytes)."""
    if _bitpack is None:
        return pack_bits_numpy(values, bits)
    return _bitpack.pack_bits(np.ascontiguousarray(values, dtype=np.uint64).reshape(-1), bits)


def pack_bits_numpy(values: np.ndarray, bits: int) -> bytes:
    """``pack_bits`` in numpy.

    As ``unpack_rows`` reads them: eight values fill exactly ``bits`` bytes, so value j of every group of
    eight lands at the same bit of its group; each group is built in 64-bit words (value j shifted into
    its word, its high bits carried into the next), eight whole-array steps whatever n is.
    """
    a = np.ascontiguousarray(values).reshape(-1).astype(np.uint64)
    n = a.size
    groups = -(-n // 8)
    v = np.zeros(groups * 8, np.uint64)
    v[:n] = a & np.uint64((1 << bits) - 1)
    v = v.reshape(groups, 8)
    words = np.zeros((groups, bits // 8 + 2), "<u8")  # 8 * bits bits, and a word to spare
    for j in range(8):
        w, shift = divmod(j * bits, 64)
        words[:, w] |= v[:, j] << np.uint64(shift)
        if shift + bits > 64:
            words[:, w + 1] |= v[:, j] >> np.uint64(64 - shift)
    return words.view(np.uint8)[:, :bits].tobytes()[: packed_size(n, bits)]


def packed_size(n: int, bits: int) -> int:
    """Bytes ``pack_bits`` writes for n values."""
    return (n * bits + 7) // 8


def unpack_bits(data: bytes, bits: int, n: int) -> np.ndarray:
    """Inverse of ``pack_bits``: (n,) int64."""
    if len(data) != packed_size(n, bits):
        raise ValueError(f"{len(data)} bytes cannot hold exactly {n} ids of {bits} bits")
    return unpack_rows(np.frombuffer(data, np.uint8).reshape(1, -1), bits, n)[0].astype(np.int64)


def unpack_rows(rows: np.ndarray, bits: int, n: int) -> np.ndarray:
    """``unpack_bits`` of every row of (m, packed_size(n, bits)) uint8 at once: (m, n) uint32.

    Eight values fill exactly ``bits`` bytes, so value j of every such group starts at the same byte and
    bit of its group: it is read for all groups at once as one word per group (an unaligned strided view of
    the rows, copied once into a buffer with room for a whole word at the end), then shifted and masked.
    Eight whole-array operations, whatever n is.
    """
    m, width = rows.shape
    groups = -(-n // 8)
    word = np.dtype("<u4") if bits <= 25 else np.dtype("<u8")  # a value and its shift (< 8) fit the word
    stride = groups * bits + word.itemsize  # room to read a whole word at the last value
    buf = np.zeros((m, stride), np.uint8)
    buf[:, :width] = rows
    out = np.empty((m, groups, 8), np.uint32)
    mask = (1 << bits) - 1
    for j in range(8):
        start = j * bits
        view = np.ndarray((m, groups), word, buf, offset=start >> 3, strides=(stride, bits))
        out[:, :, j] = (view >> (start & 7)) & mask
    return out.reshape(m, groups * 8)[:, :n]
