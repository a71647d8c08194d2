"""Soft-label blobs: the bytes the cache stores per window and label setting, which the service answers
by hash as they are and the client decodes (``shared.blobs.label_batch`` decodes many at once).

Layout 2 (written now): ``zstd(header | ...)``, the header ``SLB`` + a version byte + a kind byte + an id
coding byte; ids either packed in ceil(log2 V) bits or in the narrowest whole bytes, byte-shuffled,
whichever compresses smaller (measured: whole bytes usually, as zstd then sees the skew of frequent ids;
packed bits where ids look random; the store's ``Packer`` tries both on some blobs only). Top-k holds ids,
log-probs and tail; sampled labels one count byte per kept id, then the ids. Layout 1 (``SLB1``: ids as
whole bytes) is still read, so old rows stay valid. A blake2b-128 checksum of the compressed bytes is kept
beside each blob and checked on every read: a damaged blob raises ``BlobError`` and is recomputed, never used.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import numpy as np
import zstandard

from shared.blobs import zstd
from shared.blobs.bitpack import id_bits, pack_bits, packed_size, unpack_bits

_V1_MAGIC = b"SLB1"
_V1_HEADER = struct.Struct("<4sBHI")  # magic, id itemsize, k, L
_V2_HEADER = struct.Struct("<3sBBBBHII")  # b"SLB", version 2, kind, id coding, id bits, k or draws, L, ids kept
_KINDS = {"topk": 0, "sample": 1}
PACKED, BYTES = 0, 1
"""Id codings: ``bits`` bits each, end to end; or the narrowest whole bytes, byte-shuffled."""
_ID_DTYPES = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


class BlobError(ValueError):
    """A stored blob failed its checksum or could not be decoded (it must be recomputed)."""


def checksum(blob: bytes) -> str:
    """blake2b-128 of a stored blob, in hex."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def pack_labels(ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray, vocab_size: int, *,
                coding: int | None = None) -> bytes:
    """One window's top-k labels as a compressed blob: ids (L, k), logprobs (L, k) float16, tail (L,) float16.

    Layout 2 before zstd: header, ids (in ``coding``, ``PACKED`` or ``BYTES``; by default the smaller of the
    two once compressed), then log-probs and tail, byte-shuffled (all first bytes, then all second bytes). The
    log-probs go as differences of their float16 bit patterns along k: they are sorted, so the differences
    are small numbers that compress well, and the coding is lossless.
    """
    return _compressed(_topk_raw(ids, logprobs, tail, vocab_size), coding)[0]


def pack_sampled(ids: np.ndarray, counts: np.ndarray, draws: int, vocab_size: int, *,
                 coding: int | None = None) -> bytes:
    """One window's sampled labels as a compressed blob: ids and counts (L, W), padding where count is 0.

    Layout 2 before zstd: header, one count byte per kept id (position after position, each position's
    counts summing to ``draws``, which is how positions are told apart), then the kept ids, ascending
    within each position: packed in ``id_bits(vocab_size)`` bits (``PACKED``), or as differences from the
    previous id of the position in whole bytes (small numbers; ``BYTES``); by default whichever compresses
    smaller.
    """
    return _compressed(_sampled_raw(ids, counts, draws, vocab_size), coding)[0]


class Packer:
    """Packs many windows' label blobs in a row, as the store does: both id codings are tried on the first
    blob of each kind and on every ``probe_every``-th after it, and the blobs in between take the coding that
    won the last try. Which coding is smaller follows the model's ids (skewed or random-looking) more than the
    window, and each blob between tries saves a compression (``bench/codec.py`` measures the time, and the
    bytes against trying both on every blob)."""

    def __init__(self, vocab_size: int, probe_every: int = 16) -> None:
        if probe_every < 1:
            raise ValueError(f"probe_every must be at least 1, not {probe_every}")
        self.vocab_size, self.probe_every = vocab_size, probe_every
        self._packed = {"topk": 0, "sample": 0}
        self._coding: dict[str, int | None] = {"topk": None, "sample": None}

    def labels(self, ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray) -> bytes:
        """``pack_labels`` of one window."""
        return self._pack("topk", _topk_raw(ids, logprobs, tail, self.vocab_size))

    def sampled(self, ids: np.ndarray, counts: np.ndarray, draws: int) -> bytes:
        """``pack_sampled`` of one window."""
        return self._pack("sample", _sampled_raw(ids, counts, draws, self.vocab_size))

    def _pack(self, kind: str, raw_of: RawOf) -> bytes:
        probe = self._packed[kind] % self.probe_every == 0
        self._packed[kind] += 1
        blob, self._coding[kind] = _compressed(raw_of, None if probe else self._coding[kind])
        return blob


RawOf = Callable[[int], bytes]
"""A blob's bytes before zstd in the given id coding."""


def _topk_raw(ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray, vocab_size: int) -> RawOf:
    L, k = ids.shape
    bits = id_bits(vocab_size)
    lp_bits = np.ascontiguousarray(logprobs, dtype="<f2").view("<u2")
    delta = np.diff(lp_bits, axis=-1, prepend=np.zeros((L, 1), dtype="<u2")).astype("<u2")  # wraps mod 2^16
    rest = _shuffle(delta) + _shuffle(np.ascontiguousarray(tail, dtype="<f2"))
    return lambda coding: b"".join((
        _V2_HEADER.pack(b"SLB", 2, _KINDS["topk"], coding, bits, k, L, L * k), _code_ids(ids, bits, coding), rest))


def _sampled_raw(ids: np.ndarray, counts: np.ndarray, draws: int, vocab_size: int) -> RawOf:
    L, W = ids.shape
    keep = np.asarray(counts) > 0
    pos = np.broadcast_to(np.arange(L)[:, None], (L, W))[keep]
    order = np.lexsort((np.asarray(ids)[keep], pos))  # by position, then id
    kept, kept_counts, pos = np.asarray(ids)[keep][order], np.asarray(counts)[keep][order].astype(np.uint8), pos[order]
    first = np.r_[True, pos[1:] != pos[:-1]]
    gaps = np.where(first, kept, np.diff(kept, prepend=0))
    bits = id_bits(vocab_size)
    return lambda coding: b"".join((
        _V2_HEADER.pack(b"SLB", 2, _KINDS["sample"], coding, bits, draws, L, kept.size), kept_counts.tobytes(),
        _code_ids(kept if coding == PACKED else gaps, bits, coding)))


def _compressed(raw_of: RawOf, coding: int | None) -> tuple[bytes, int]:
    """The compressed blob in ``coding``, or else the smaller of the two codings' (packed bits win a tie), and
    the coding it holds."""
    if coding is not None:
        if coding not in (PACKED, BYTES):
            raise ValueError(f"unknown id coding {coding}")
        return zstd.compress(raw_of(coding)), coding
    return min(((zstd.compress(raw_of(c)), c) for c in (PACKED, BYTES)), key=lambda blob: len(blob[0]))


def _code_ids(ids: np.ndarray, bits: int, coding: int) -> bytes:
    if coding == PACKED:
        return pack_bits(ids, bits)
    return _shuffle(np.ascontiguousarray(ids, dtype=_dtype_of_bits(bits)).reshape(-1))


def _read_ids(raw: bytes, off: int, n: int, bits: int, coding: int) -> tuple[np.ndarray, int]:
    """(n,) int64 ids coded at ``off``, and the offset after them."""
    if coding == PACKED:
        end = off + packed_size(n, bits)
        return unpack_bits(raw[off:end], bits, n), end
    if coding != BYTES:
        raise BlobError(f"unknown id coding {coding}")
    dt = _dtype_of_bits(bits)
    end = off + n * dt.itemsize
    if len(raw) < end:
        raise BlobError("label blob is too short for its ids")
    return _unshuffle(raw[off:end], dt).astype(np.int64), end


def unpack_labels(blob: bytes, expected_checksum: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of ``pack_labels`` (layout 2, or layout 1 of older rows) after checking the checksum;
    raises BlobError on any damage."""
    return labels_from_raw(open_blob(blob, expected_checksum))


def labels_from_raw(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``unpack_labels`` of a blob already checked and decompressed; raises BlobError on any damage."""
    try:
        if raw[:4] == _V1_MAGIC:
            return _unpack_v1(raw)
        kind, coding, bits, k, L, n, off = _v2_header(raw)
        if kind != _KINDS["topk"] or n != L * k:
            raise BlobError("not a top-k soft-label blob")
        ids, end = _read_ids(raw, off, n, bits, coding)
        if len(raw) != end + 2 * L * k + 2 * L:
            raise BlobError("soft-label blob has the wrong length")
        delta = _unshuffle(raw[end : end + 2 * L * k], np.dtype("<u2")).reshape(L, k)
        lp = np.cumsum(delta, axis=-1, dtype="<u2").view("<f2")
        tail = _unshuffle(raw[end + 2 * L * k :], np.dtype("<f2"))
    except (struct.error, ValueError) as e:
        raise BlobError(f"corrupt soft-label blob: {e}") from e
    return ids.astype(_dtype_of_bits(bits)).reshape(L, k), lp, tail


def unpack_sampled(blob: bytes, expected_checksum: str) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``pack_sampled`` after checking the checksum: ids and counts (L, W), most drawn first (ties:
    smaller id), W the widest position's kept ids; raises BlobError on any damage."""
    raw = open_blob(blob, expected_checksum)
    try:
        kind, coding, bits, draws, L, n, off = _v2_header(raw)
        if kind != _KINDS["sample"]:
            raise BlobError("not a sampled-label blob")
        counts = np.frombuffer(raw, np.uint8, n, off).astype(np.int64)
        kept, end = _read_ids(raw, off + n, n, bits, coding)
        before = np.cumsum(counts) - counts  # draws before each kept id
        if (end != len(raw) or n == 0 or np.any(counts == 0) or int(counts.sum()) != L * draws
                or np.any(before // draws != (before + counts - 1) // draws)):
            raise BlobError("sampled-label counts do not add up to the draws of each position")
        pos = before // draws
        start = np.searchsorted(pos, pos, side="left")  # first kept id of each one's position
        if coding == BYTES:  # differences within a position back to ids: sums from the position's start
            total = np.cumsum(kept)
            kept = total - np.where(start > 0, total[np.maximum(start - 1, 0)], 0)
        order = np.lexsort((kept, -counts, pos))  # by position, most drawn first, then id
        kept, counts = kept[order], counts[order]
        col = np.arange(n) - start
        width = int(col.max()) + 1
        ids = np.zeros((L, width), dtype=_dtype_of_bits(bits))
        out_counts = np.zeros((L, width), dtype=np.uint8)
        ids[pos, col], out_counts[pos, col] = kept, counts
    except (struct.error, ValueError) as e:
        raise BlobError(f"corrupt sampled-label blob: {e}") from e
    return ids, out_counts


def _v2_header(raw: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(kind, id coding, id bits, k or draws, L, ids kept, data offset) of a layout-2 label blob."""
    magic, version, kind, coding, bits, width, L, n = _V2_HEADER.unpack_from(raw)
    if magic != b"SLB" or version != 2 or not 1 <= bits <= 32:
        raise BlobError(f"not a soft-label blob of layout 2 (magic {magic!r}, version {version})")
    return kind, coding, bits, width, L, n, _V2_HEADER.size


def _dtype_of_bits(bits: int) -> np.dtype:
    return _ID_DTYPES[1 if bits <= 8 else 2 if bits <= 16 else 4]


def _unpack_v1(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layout 1: ids as whole little-endian bytes (1, 2 or 4), byte-shuffled, then as layout 2."""
    _, size, k, L = _V1_HEADER.unpack_from(raw)
    if size not in _ID_DTYPES:
        raise BlobError("not a soft-label blob")
    off = _V1_HEADER.size
    n_ids = L * k * size
    if len(raw) != off + n_ids + 2 * L * k + 2 * L:
        raise BlobError("soft-label blob has the wrong length")
    ids = _unshuffle(raw[off : off + n_ids], _ID_DTYPES[size]).reshape(L, k)
    delta = _unshuffle(raw[off + n_ids : off + n_ids + 2 * L * k], np.dtype("<u2")).reshape(L, k)
    lp = np.cumsum(delta, axis=-1, dtype="<u2").view("<f2")
    tail = _unshuffle(raw[off + n_ids + 2 * L * k :], np.dtype("<f2"))
    return ids, lp, tail


def _shuffle(a: np.ndarray) -> bytes:
    """Bytes of ``a`` grouped by position within each element (byte 0 of all, then byte 1...)."""
    return np.frombuffer(a.tobytes(), np.uint8).reshape(-1, a.dtype.itemsize).T.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype) -> np.ndarray:
    planes = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(-1)


def open_blob(blob: bytes, expected_checksum: str) -> bytes:
    """A stored blob decompressed after checking its checksum; BlobError when either fails."""
    if checksum(blob) != expected_checksum:
        raise BlobError("checksum mismatch")
    try:
        return zstd.decompress(blob)
    except zstandard.ZstdError as e:
        raise BlobError(f"cannot decompress blob: {e}") from e
