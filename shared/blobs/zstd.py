"""zstd with one compression and one decompression context per thread, reused: the store made three
contexts per window (labels in two id codings, scores), each costing about a quarter of a compression
(``bench/codec.py`` times packing with and without them). A reused context gives the same bytes as a new
one (level 3, no dictionary); contexts are never shared between threads, which zstandard does not allow."""

from __future__ import annotations

import threading

import zstandard

LEVEL = 3
_local = threading.local()


def compress(data: bytes) -> bytes:
    """One zstd frame of ``data`` at level 3."""
    cctx = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard.ZstdCompressor(level=LEVEL)
    return cctx.compress(data)


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompression context."""
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def decompress(frame: bytes) -> bytes:
    """The data of one zstd frame (``zstandard.ZstdError`` when it is not one)."""
    return decompressor().decompress(frame)
