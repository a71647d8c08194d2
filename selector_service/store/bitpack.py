"""Ids in the fewest bits a vocabulary needs (17 bits up to 131,072 ids), packed end to end."""

from __future__ import annotations

import numpy as np


def id_bits(vocab_size: int) -> int:
    """Bits per id: ceil(log2(vocab_size)), at least 1."""
    return max(1, (vocab_size - 1).bit_length())


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Each value's low ``bits`` bits, least significant first, end to end; the last byte zero-padded."""
    a = np.ascontiguousarray(values, dtype="<u4").reshape(-1)
    planes = np.unpackbits(a.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]  # (n, bits)
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def packed_size(n: int, bits: int) -> int:
    """Bytes ``pack_bits`` writes for n values."""
    return (n * bits + 7) // 8


def unpack_bits(data: bytes, bits: int, n: int) -> np.ndarray:
    """Inverse of ``pack_bits``: (n,) int64."""
    if len(data) != packed_size(n, bits):
        raise ValueError(f"{len(data)} bytes cannot hold exactly {n} ids of {bits} bits")
    planes = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: n * bits].reshape(n, bits)
    full = np.zeros((n, 32), dtype=np.uint8)
    full[:, :bits] = planes
    return np.packbits(full, axis=1, bitorder="little").view("<u4").reshape(n).astype(np.int64)
