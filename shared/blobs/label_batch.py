"""Many soft-label blobs decoded at once: the cache-hit path of requests by hash (in the client, from an
answer of stored blobs; in the service, for an answer of arrays).

``labels.unpack_labels`` decodes one blob with a handful of numpy calls on small arrays; a request of
hundreds of windows pays that per window. Here blobs are grouped by layout (layout 1, or layout 2 with
its id coding and bits; k and L): each group is decompressed into one buffer whose ids are unpacked
(packed bits) or unshuffled (whole bytes), and whose log-prob deltas and tail are decoded, with one call
each for the whole group. Every blob's checksum is still checked; a damaged one is reported, never decoded.
Sampled-label blobs (a handful of ids per position) are decoded one by one and padded into one batch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from shared.blobs import zstd
from shared.blobs.bitpack import packed_size, unpack_rows
from shared.blobs.labels import (
    _ID_DTYPES,
    _KINDS,
    _V1_HEADER,
    _V1_MAGIC,
    BYTES,
    PACKED,
    BlobError,
    _dtype_of_bits,
    _v2_header,
    checksum,
    unpack_sampled,
)


@dataclass
class LabelBatch:
    """Decoded labels of n blobs, padded to the longest.

    Attributes:
        ids: (n, L, k) unsigned ids, the stored width.
        logprobs: (n, L, k) float16.
        tail: (n, L) float16.
        lengths: (n,) int32 positions of each (zero past it).
    """

    ids: np.ndarray
    logprobs: np.ndarray
    tail: np.ndarray
    lengths: np.ndarray


def unpack_label_batch(blobs: list[bytes], checksums: list[str], k: int) -> tuple[LabelBatch, list[int]]:
    """Decode blobs of ``k`` ids per position; (the batch of the good ones in order, indices of the bad ones).

    A blob that fails its checksum, does not decompress or is not a ``k``-wide label blob is left out
    of the batch and its index returned, so the caller can recompute it.
    """
    dctx = zstd.decompressor()
    raws: list[bytes] = []
    layouts: list[_Layout] = []
    bad: list[int] = []
    for i, (blob, ck) in enumerate(zip(blobs, checksums, strict=True)):
        try:
            if checksum(blob) != ck:
                raise BlobError("checksum mismatch")
            raw = dctx.decompress(blob)
            layout = _layout_of(raw, k)
        except (BlobError, zstandard.ZstdError, struct.error):
            bad.append(i)
            continue
        raws.append(raw)
        layouts.append(layout)
    return _assemble(raws, layouts, k), bad


@dataclass(frozen=True)
class _Layout:
    """How a decompressed top-k blob is laid out: header bytes, id coding and width, L and k."""

    header: int
    packed: bool
    bits: int
    size: int  # bytes of a decoded id
    L: int
    k: int

    @property
    def id_bytes(self) -> int:
        return packed_size(self.L * self.k, self.bits) if self.packed else self.L * self.k * self.size

    @property
    def length(self) -> int:
        return self.header + self.id_bytes + 2 * self.L * self.k + 2 * self.L


def _layout_of(raw: bytes, k: int) -> _Layout:
    """The layout of a decompressed blob of ``k`` ids per position; BlobError when it is not one."""
    if raw[:4] == _V1_MAGIC:
        _, size, kk, L = _V1_HEADER.unpack_from(raw)
        if size not in _ID_DTYPES:
            raise BlobError("not a soft-label blob")
        layout = _Layout(_V1_HEADER.size, False, 8 * size, size, L, kk)
    else:
        kind, coding, bits, kk, L, n, off = _v2_header(raw)
        if kind != _KINDS["topk"] or n != L * kk or coding not in (PACKED, BYTES):
            raise BlobError("not a top-k soft-label blob")
        layout = _Layout(off, coding == PACKED, bits, _dtype_of_bits(bits).itemsize, L, kk)
    if kk != k:
        raise BlobError("not a soft-label blob of this k")
    if len(raw) != layout.length:
        raise BlobError("soft-label blob has the wrong length")
    return layout


def _assemble(raws: list[bytes], layouts: list[_Layout], k: int) -> LabelBatch:
    """One padded batch from decompressed blobs; each group of one layout is decoded in one go."""
    n = len(raws)
    size = max((lay.size for lay in layouts), default=1)
    L_max = max((lay.L for lay in layouts), default=0)
    if n and all(lay == layouts[0] for lay in layouts):  # the usual case: one layout, no padding, no copy
        return _decode_group(raws, layouts[0])
    out = LabelBatch(np.zeros((n, L_max, k), _ID_DTYPES[size]), np.zeros((n, L_max, k), "<f2"),
                     np.zeros((n, L_max), "<f2"), np.zeros(n, np.int32))
    for layout in set(layouts):
        rows = [i for i, lay in enumerate(layouts) if lay == layout]
        part = _decode_group([raws[i] for i in rows], layout)
        L = layout.L
        out.ids[rows, :L], out.logprobs[rows, :L], out.tail[rows, :L] = part.ids, part.logprobs, part.tail
        out.lengths[rows] = L
    return out


def _decode_group(raws: list[bytes], layout: _Layout) -> LabelBatch:
    """Blobs of one layout: header, then the ids, the byte planes of log-prob deltas and of the tail."""
    L, k = layout.L, layout.k
    buf = np.frombuffer(b"".join(raws), np.uint8).reshape(len(raws), -1)[:, layout.header :]
    n_ids, n_lp = layout.id_bytes, 2 * L * k
    if layout.packed:
        ids = unpack_rows(buf[:, :n_ids], layout.bits, L * k).astype(_ID_DTYPES[layout.size]).reshape(-1, L, k)
    else:
        ids = _planes(buf[:, :n_ids], layout.size).reshape(-1, L, k)
    delta = _planes(buf[:, n_ids : n_ids + n_lp], 2).reshape(-1, L, k)
    flat = delta.reshape(-1, k)
    for j in range(1, k):  # a running sum of the bit-pattern deltas along k (mod 2^16), column by column:
        flat[:, j] += flat[:, j - 1]  # faster than cumsum over a short last axis
    logprobs = delta.view("<f2")
    tail = _planes(buf[:, n_ids + n_lp :], 2).view("<f2")
    return LabelBatch(ids, logprobs, tail, np.full(len(raws), L, np.int32))


def _planes(planes: np.ndarray, size: int) -> np.ndarray:
    """(n, size * m) byte planes (byte 0 of every element, then byte 1...) -> (n, m) little-endian ints.

    Built with shifts over whole planes: far faster than a byte transpose of small elements.
    """
    n = planes.shape[0]
    p = planes.reshape(n, size, -1)
    dt = _ID_DTYPES[size]
    out = p[:, size - 1].astype(dt)
    for b in range(size - 2, -1, -1):
        out <<= 8
        out |= p[:, b]
    return out


def pad_sampled(labels: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows' sampled labels (ids, counts, each (L_i, W_i)) as one batch, zero past each one's own: ids
    (N, L, W) int64 and counts (N, L, W) uint8 (0: padding), L the longest and W the widest; lengths (N,)."""
    lengths = np.array([ids.shape[0] for ids, _ in labels], dtype=np.int32)
    L, W = int(lengths.max(initial=0)), max((ids.shape[1] for ids, _ in labels), default=0)
    ids_out = np.zeros((len(labels), L, W), dtype=np.int64)  # (N, L, W)
    counts_out = np.zeros((len(labels), L, W), dtype=np.uint8)  # (N, L, W)
    for i, (a, c) in enumerate(labels):
        ids_out[i, : a.shape[0], : a.shape[1]], counts_out[i, : c.shape[0], : c.shape[1]] = a, c
    return ids_out, counts_out, lengths


def unpack_sampled_batch(blobs: list[bytes], checksums: list[str]
                         ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]:
    """Sampled-label blobs decoded one by one: (each good one's ids and counts, indices of the bad ones)."""
    good: list[tuple[np.ndarray, np.ndarray]] = []
    bad: list[int] = []
    for i, (blob, ck) in enumerate(zip(blobs, checksums, strict=True)):
        try:
            good.append(unpack_sampled(blob, ck))
        except BlobError:
            bad.append(i)
    return good, bad
