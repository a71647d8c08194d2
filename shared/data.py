"""Packed datasets: fixed windows of ``seq_len + 1`` token ids in memory-mapped files.

Layout of a dataset folder (like nanoGPT's ``.bin`` files, with a manifest)::

    manifest.json     format, seq_len, dtype, vocab, tokenizer hash, counts, fingerprint
    tokenizer.json    the tokenizer the windows were made with
    train.bin         (N_train, seq_len + 1) little-endian uint16 or uint32, row-major, no header
    val.bin           (N_val,   seq_len + 1)
    train.hashes      (N_train, 16) the windows' hashes (raw blake2b digests), so no reader hashes again
    val.hashes        (N_val, 16)
    holdout/          only with ``salt prepare --holdout-fraction``: a dataset of the same layout whose train
                      split is the held-out documents (never in the train split above) and whose val is the same

Window i of a split holds inputs ``w[:-1]`` and targets ``w[1:]``. Its identity is
``window_hash(w)`` (blake2b-128 of the ids as little-endian uint32), the cache key everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer

from shared.errors import SaltError
from shared.hashing import window_digests, window_hash
from shared.tokenizer import load_tokenizer, tokenizer_hash

T = TypeVar("T")
FORMAT = "salt-packed-v1"
HASH_BYTES = 16
"""Bytes of a window hash (blake2b digest size)."""
SPLITS = ("train", "val")
HOLDOUT_DIR = "holdout"
"""Sub-folder of a dataset that holds its holdout as a dataset of its own."""
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
    digests: np.ndarray | None = None
    """(N, 16) uint8 window hashes as prepare wrote them (``<split>.hashes``, memory-mapped); None in a
    dataset written before them (then they are computed from the windows)."""

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.windows[i])

    def digests_at(self, idx: np.ndarray) -> np.ndarray:
        """(n, 16) uint8 hashes of the windows at ``idx``, as stored (computed for a dataset without them)."""
        if self.digests is not None:
            return np.asarray(self.digests[idx])
        return window_digests(np.asarray(self.windows[idx]))

    def hash(self, i: int) -> str:
        """Content hash of window ``i``."""
        return bytes(self.digests[i]).hex() if self.digests is not None else window_hash(self.windows[i])

    @cached_property
    def hashes(self) -> list[str]:
        """Content hashes of every window, in order (read from the hashes file, or computed once)."""
        if self.digests is not None:
            return [bytes(row).hex() for row in self.digests]
        return [window_hash(row) for row in self.windows]

    def batch(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """Windows at ``indices`` as a (B, seq_len + 1) int64 tensor."""
        return torch.from_numpy(self.windows[np.asarray(indices)].astype(np.int64))


class _ManifestField(Generic[T]):
    """A read-only attribute of a ``PackedDataset`` read from its manifest, converted to ``kind``."""

    def __init__(self, kind: Callable[[Any], T]) -> None:
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: PackedDataset, owner: type | None = None) -> T:
        return self.kind(obj.manifest[self.name])


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
        return WindowSplit(name, arr, self._digests(info))

    def _digests(self, info: dict[str, Any]) -> np.ndarray | None:
        if "hashes" not in info:
            return None
        f = self.path / info["hashes"]
        if not f.is_file() or f.stat().st_size != info["windows"] * HASH_BYTES:
            raise SaltError(f"{f} is missing or has the wrong size", "re-run `salt prepare`")
        return np.memmap(f, dtype=np.uint8, mode="r", shape=(info["windows"], HASH_BYTES))

    seq_len = _ManifestField(int)
    """Input tokens per window (windows hold ``seq_len + 1`` ids)."""
    vocab_size = _ManifestField(int)
    """Ids the tokenizer can produce."""
    eot_id = _ManifestField(int)
    """The end-of-text id that joins documents."""
    tokenizer_hash = _ManifestField(str)
    """``shared.tokenizer.tokenizer_hash`` of the tokenizer the windows were made with."""
    fingerprint = _ManifestField(str)
    """The dataset's identity: tokenizer, window length and every window's ids."""

    @property
    def window_len(self) -> int:
        return self.seq_len + 1

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

    def holdout_path(self) -> Path:
        """The folder of this dataset's holdout (a dataset whose train split is the held-out documents)."""
        info = self.manifest.get("holdout")
        if not info:
            raise SaltError(f"{self.path} has no holdout split (it was prepared without one)",
                            "prepare a dataset with one: `salt prepare --holdout-fraction 0.1 --out NEW_FOLDER`")
        path = self.path / str(info["path"])
        if not (path / "manifest.json").is_file():
            raise SaltError(f"{path} (the holdout of {self.path}) is missing", "re-run `salt prepare`")
        return path

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
