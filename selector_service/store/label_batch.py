"""Many soft-label blobs decoded at once: the cache-hit path of requests by hash.

``codec.unpack_labels`` decodes one blob with a handful of numpy calls on small arrays; a request of
hundreds of windows pays that per window. Here the layout-1 blobs of one shape (id width, k, L) are
decompressed into one buffer and unshuffled, delta-decoded and cut with one call each for the whole
batch; blobs of layout 2 (ids in packed bits or byte-shuffled, whichever was smaller) are decoded one
by one by the codec. Every blob's checksum is still checked; a damaged one is reported, never decoded.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import numpy as np
import zstandard

from selector_service.store.codec import _ID_DTYPES, _V1_HEADER, _V1_MAGIC, BlobError, checksum, labels_from_raw

_local = threading.local()  # a zstd context per thread: creating one costs more than decompressing a blob


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
    dctx = getattr(_local, "dctx", None) or _new_dctx()
    raws: list[bytes] = []
    heads: list[tuple[int, int]] = []  # (id itemsize, L)
    rows: list[int] = []  # each good blob's place among the good ones, in the order of raws / decoded
    decoded: list[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    bad: list[int] = []
    for i, (blob, ck) in enumerate(zip(blobs, checksums, strict=True)):
        good = len(rows) + len(decoded)
        try:
            if checksum(blob) != ck:
                raise BlobError("checksum mismatch")
            raw = dctx.decompress(blob)
            if raw[:4] != _V1_MAGIC:  # layout 2: the codec's own decoder
                arrays = labels_from_raw(raw)
                if arrays[0].shape[-1] != k:
                    raise BlobError("not a soft-label blob of this k")
                decoded.append((good, arrays))
                continue
            _, size, kk, L = _V1_HEADER.unpack_from(raw)
            if size not in _ID_DTYPES or kk != k:
                raise BlobError("not a soft-label blob of this k")
            if len(raw) != _V1_HEADER.size + L * k * (size + 2) + 2 * L:
                raise BlobError("soft-label blob has the wrong length")
        except (BlobError, zstandard.ZstdError, struct.error):
            bad.append(i)
            continue
        raws.append(raw)
        heads.append((size, L))
        rows.append(good)
    batch = _assemble(raws, heads, k)
    if not decoded:
        return batch, bad
    return _with_decoded(batch, rows, decoded, k), bad


def _with_decoded(batch: LabelBatch, rows: list[int], decoded: list[tuple[int, tuple[np.ndarray, np.ndarray,
                  np.ndarray]]], k: int) -> LabelBatch:
    """The layout-1 batch (at ``rows``) and the blobs decoded one by one, in their order, padded to the longest."""
    n = len(rows) + len(decoded)
    L_max = max([batch.ids.shape[1] if rows else 0, *(a[0].shape[0] for _, a in decoded)])
    dt = max([batch.ids.dtype if rows else np.dtype("u1"), *(a[0].dtype for _, a in decoded)], key=lambda d: d.itemsize)
    out = LabelBatch(np.zeros((n, L_max, k), dt), np.zeros((n, L_max, k), "<f2"), np.zeros((n, L_max), "<f2"),
                     np.zeros(n, np.int32))
    if rows:
        L = batch.ids.shape[1]
        out.ids[rows, :L], out.logprobs[rows, :L], out.tail[rows, :L] = batch.ids, batch.logprobs, batch.tail
        out.lengths[rows] = batch.lengths
    for j, (ids, lp, tail) in decoded:
        L = ids.shape[0]
        out.ids[j, :L], out.logprobs[j, :L], out.tail[j, :L], out.lengths[j] = ids, lp, tail, L
    return out


def _new_dctx() -> zstandard.ZstdDecompressor:
    _local.dctx = zstandard.ZstdDecompressor()
    return _local.dctx


def _assemble(raws: list[bytes], heads: list[tuple[int, int]], k: int) -> LabelBatch:
    """One padded batch from decompressed blobs; each group of one layout is decoded in one go."""
    n = len(raws)
    size = max((s for s, _ in heads), default=1)
    L_max = max((L for _, L in heads), default=0)
    if n and all(h == heads[0] for h in heads):  # the usual case: one layout, no padding, no copy
        return _decode_group(raws, size, L_max, k)
    out = LabelBatch(np.zeros((n, L_max, k), _ID_DTYPES[size]), np.zeros((n, L_max, k), "<f2"),
                     np.zeros((n, L_max), "<f2"), np.zeros(n, np.int32))
    for layout in set(heads):
        rows = [i for i, h in enumerate(heads) if h == layout]
        part = _decode_group([raws[i] for i in rows], layout[0], layout[1], k)
        L = layout[1]
        out.ids[rows, :L], out.logprobs[rows, :L], out.tail[rows, :L] = part.ids, part.logprobs, part.tail
        out.lengths[rows] = L
    return out


def _decode_group(raws: list[bytes], size: int, L: int, k: int) -> LabelBatch:
    """Blobs of one layout: header, then byte planes of ids, of log-prob deltas and of the tail."""
    buf = np.frombuffer(b"".join(raws), np.uint8).reshape(len(raws), -1)[:, _V1_HEADER.size :]
    n_ids, n_lp = L * k * size, 2 * L * k
    ids = _planes(buf[:, :n_ids], size).reshape(-1, L, k)
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
