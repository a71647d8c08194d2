"""The stored bytes beside soft-label blobs (``shared.blobs.labels``): a window's scores, a pool window's
tokens, and a selection's indices and hashes.

Scores: ``zstd(header | embedding)``, with a blake2b-128 checksum kept beside the blob and checked on every
read (a damaged blob raises ``BlobError`` and is recomputed, never served). Tokens: a byte giving the id
width (2 or 4), then zstd of the little-endian ids. Selections: ``zstd(uint32 indices | 16-byte hashes)``,
checksummed too.
"""

from __future__ import annotations

import struct

import numpy as np

from shared.blobs import zstd
from shared.blobs.labels import BlobError, checksum, open_blob
from shared.labels import WindowScore

_SCORE_MAGIC = b"SSC1"
_SCORE_HEADER = struct.Struct("<4sI6d")  # magic, C, n_tokens mean median top1 entropy salt_ds


def pack_scores(row: dict[str, float], embedding: np.ndarray) -> bytes:
    """One window's scores (keys of ``window_scores``) and its (C,) embedding as a compressed blob."""
    emb = np.ascontiguousarray(embedding, dtype="<f2")
    header = _SCORE_HEADER.pack(
        _SCORE_MAGIC, emb.size, row["n_tokens"], row["mean_loss"], row["median_loss"], row["top1_acc"],
        row["mean_entropy"], row["salt_ds"],
    )
    return zstd.compress(header + emb.tobytes())


def unpack_scores(blob: bytes, expected_checksum: str, window_hash: str) -> WindowScore:
    """Inverse of ``pack_scores`` after checking the checksum; raises BlobError on any damage."""
    raw = open_blob(blob, expected_checksum)
    try:
        magic, C, n, mean, median, top1, ent, ds = _SCORE_HEADER.unpack_from(raw)
        if magic != _SCORE_MAGIC:
            raise BlobError("not a score blob")
        emb = np.frombuffer(raw, "<f2", C, _SCORE_HEADER.size)
    except (struct.error, ValueError) as e:
        raise BlobError(f"corrupt score blob: {e}") from e
    return WindowScore(window_hash, int(n), mean, median, top1, ent, None if np.isnan(ds) else ds, emb)


def pack_tokens(window: np.ndarray) -> bytes:
    """A pool window's (L + 1,) ids as uint16 (uint32 where an id needs it), zstd-compressed."""
    dt = np.dtype("<u2") if int(window.max(initial=0)) < 1 << 16 else np.dtype("<u4")
    return bytes([dt.itemsize]) + zstd.compress(window.astype(dt).tobytes())


def unpack_tokens(blob: bytes) -> np.ndarray:
    """Inverse of ``pack_tokens``: (L + 1,) int64 ids."""
    dt = np.dtype("<u2") if blob[0] == 2 else np.dtype("<u4")
    return np.frombuffer(zstd.decompress(blob[1:]), dt).astype(np.int64)


def pack_selection(indices: np.ndarray, hashes: list[str]) -> bytes:
    """A selection's (N,) pool indices and N window hashes (hex of 16 bytes) as one compressed blob."""
    raw = np.asarray(indices, dtype="<u4").tobytes() + b"".join(bytes.fromhex(h) for h in hashes)
    return zstd.compress(raw)


def unpack_selection(blob: bytes, expected_checksum: str, count: int) -> tuple[list[int], list[str]]:
    """Inverse of ``pack_selection`` after checking the checksum and the length; raises BlobError."""
    if checksum(blob) != expected_checksum:
        raise BlobError("selection blob checksum mismatch")
    raw = zstd.decompress(blob)
    if len(raw) != 20 * count:
        raise BlobError("selection blob has the wrong length")
    indices = np.frombuffer(raw[: 4 * count], "<u4").tolist()
    hashes = [raw[4 * count + 16 * i : 4 * count + 16 * (i + 1)].hex() for i in range(count)]
    return indices, hashes
