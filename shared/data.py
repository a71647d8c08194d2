"""Packed datasets: fixed windows of ``seq_len + 1`` token ids in memory-mapped files.

Layout of a dataset folder (like nanoGPT's ``.bin`` files, with a manifest)::

    manifest.json     format, seq_len, dtype, vocab, tokenizer hash, counts, fingerprint
    tokenizer.json    the tokenizer the windows were made with
    train.bin         (N_train, seq_len + 1) little-endian uint16 or uint32, row-major, no header
    val.bin           (N_val,   seq_len + 1)

Window i of a split holds inputs ``w[:-1]`` and targets ``w[1:]``. Its identity is
``window_hash(w)`` (blake2b-128 of the ids as little-endian uint32), the cache key everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from shared.errors import SaltError
from shared.hashing import window_hash
from shared.tokenizer import load_tokenizer, tokenizer_hash

FORMAT = "salt-packed-v1"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def dtype_for_vocab(vocab_size: int, requested: str = "auto") -> str:
    """The narrowest dtype that holds every id (or the requested one, checked)."""
    if requested == "auto":
        return "uint16" if vocab_size <= 1 << 16 else "uint32"
    if requested not in DTYPES:
        raise SaltError(f"unknown dtype {requested!r}", "use auto, uint16 or uint32")
    limit = int(np.iinfo(DTYPES[requested]).max) + 1
    if vocab_size > limit:
        raise SaltError(
            f"vocab size {vocab_size} does not fit in {requested} (at most {limit} ids)",
            "use --dtype uint32 or a smaller vocabulary",
        )
    return requested


@dataclass
class WindowSplit:
    """One split of a packed dataset; indexable windows over a read-only memory map."""

    name: str
    windows: np.ndarray
    """(N, seq_len + 1) unsigned ints, memory-mapped."""

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.windows[i])

    def hash(self, i: int) -> str:
        """Content hash of window ``i``."""
        return window_hash(self.windows[i])

    @cached_property
    def hashes(self) -> list[str]:
        """Content hashes of every window, in order (computed once, then cached)."""
        return [window_hash(row) for row in self.windows]

    def batch(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """Windows at ``indices`` as a (B, seq_len + 1) int64 tensor."""
        return torch.from_numpy(self.windows[np.asarray(indices)].astype(np.int64))


class PackedDataset:
    """A prepared dataset folder: manifest, tokenizer and memory-mapped window files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.is_file():
            raise SaltError(f"{self.path} is not a prepared dataset (no manifest.json)", "run `salt prepare` first")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SaltError(f"{mpath} is corrupt", "re-run `salt prepare`") from e
        if not isinstance(self.manifest, dict):
            raise SaltError(f"{mpath} is corrupt (not a JSON object)", "re-run `salt prepare`")
        if self.manifest.get("format") != FORMAT:
            raise SaltError(f"{mpath} has format {self.manifest.get('format')!r}, expected {FORMAT!r}",
                            "re-run `salt prepare` with this version")
        self._splits: dict[str, WindowSplit] = {}
        try:
            missing = [k for k in ("seq_len", "dtype", "vocab_size", "eot_id", "tokenizer_hash", "fingerprint")
                       if k not in self.manifest]
            if missing:
                raise KeyError(missing[0])
            for name in SPLITS:
                self._splits[name] = self._open(name)
        except (KeyError, TypeError, ValueError) as e:
            raise SaltError(f"{mpath} is corrupt (bad or missing field {e})", "re-run `salt prepare`") from e

    def _open(self, name: str) -> WindowSplit:
        info = self.manifest["splits"][name]
        f = self.path / info["file"]
        dtype = DTYPES[self.manifest["dtype"]]
        expected = info["windows"] * self.window_len * dtype.itemsize
        if not f.is_file() or f.stat().st_size != expected:
            raise SaltError(f"{f} is missing or has the wrong size (expected {expected} bytes)",
                            "re-run `salt prepare`")
        if info["windows"] == 0:
            return WindowSplit(name, np.zeros((0, self.window_len), dtype=dtype))
        arr = np.memmap(f, dtype=dtype, mode="r", shape=(info["windows"], self.window_len))
        return WindowSplit(name, arr)

    @property
    def seq_len(self) -> int:
        return int(self.manifest["seq_len"])

    @property
    def window_len(self) -> int:
        return self.seq_len + 1

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def eot_id(self) -> int:
        return int(self.manifest["eot_id"])

    @property
    def tokenizer_hash(self) -> str:
        return str(self.manifest["tokenizer_hash"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def train(self) -> WindowSplit:
        return self._splits["train"]

    @property
    def val(self) -> WindowSplit:
        return self._splits["val"]

    def split(self, name: str) -> WindowSplit:
        if name not in self._splits:
            raise SaltError(f"unknown split {name!r}", f"use one of {', '.join(SPLITS)}")
        return self._splits[name]

    def tokenizer(self) -> Tokenizer:
        tok = load_tokenizer(self.path / "tokenizer.json")
        self.check_tokenizer(tok, what=f"{self.path}/tokenizer.json")
        return tok

    def check_tokenizer(self, tok: Tokenizer, *, what: str = "the tokenizer") -> None:
        """Refuse a tokenizer other than the one the windows were made with."""
        h = tokenizer_hash(tok)
        if h != self.tokenizer_hash:
            raise SaltError(
                f"{what} does not match the dataset {self.path} "
                f"(tokenizer hash {h[:12]} != {self.tokenizer_hash[:12]})",
                "use the dataset's tokenizer.json or re-run `salt prepare` with this tokenizer",
            )
