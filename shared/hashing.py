"""Content hashes: the identities of windows, documents, files and models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def window_hash(tokens: np.ndarray | list[int]) -> str:
    """A window's identity: blake2b-128 of its token ids as little-endian uint32, in hex.

    The hash does not depend on the dtype the window is stored in (uint16 or uint32).
    """
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"a window is a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
        raise ValueError("token ids must fit in uint32")
    return hashlib.blake2b(arr.astype("<u4").tobytes(), digest_size=16).hexdigest()


def window_digests(windows: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """(N, 16) uint8: ``window_hash`` of every row of an (N, L) array, as raw digests."""
    out = np.empty((len(windows), 16), dtype=np.uint8)
    for start in range(0, len(windows), chunk):
        rows = np.ascontiguousarray(windows[start : start + chunk]).astype("<u4")
        for i, row in enumerate(rows):
            out[start + i] = np.frombuffer(hashlib.blake2b(row.tobytes(), digest_size=16).digest(), np.uint8)
    return out


def text_hash(text: str) -> str:
    """blake2b-128 of a UTF-8 text, in hex (used to split documents train/val)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def file_hash(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """blake2b-128 of a file's bytes, in hex."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def bytes_hash(*parts: bytes | str) -> str:
    """blake2b-128 over several byte strings, each length-prefixed so boundaries count."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        b = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()
