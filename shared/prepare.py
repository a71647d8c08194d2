"""``salt prepare``: corpus -> tokenizer -> packed dataset folder, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

from shared.config import ConfigError, FlatConfig, check_choices
from shared.corpus import CorpusSpec, Document, iter_documents, split_of
from shared.data import DTYPES, FORMAT, HOLDOUT_DIR, PackedDataset, dtype_for_vocab
from shared.errors import SaltError
from shared.hashing import window_digests
from shared.tokenizer import eot_id, load_tokenizer, tokenizer_hash, train_tokenizer

log = logging.getLogger(__name__)
ENCODE_CHUNK = 512


def _pack(tok: Tokenizer, docs: list[Document], eot: int, window_len: int, dtype: np.dtype) -> np.ndarray:
    """Documents (ordered by content hash) joined by end-of-text, cut into (N, window_len) windows."""
    docs = sorted(docs, key=lambda d: d.hash)
    parts: list[np.ndarray] = []
    eot_arr = np.array([eot], dtype=dtype)
    for start in range(0, len(docs), ENCODE_CHUNK):
        chunk = [d.text for d in docs[start : start + ENCODE_CHUNK]]
        for enc in tok.encode_batch(chunk, add_special_tokens=False):
            parts.append(np.asarray(enc.ids, dtype=dtype))
            parts.append(eot_arr)
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    n = len(stream) // window_len
    return stream[: n * window_len].reshape(n, window_len)


def _pack_split(name: str, docs: list[Document], tok: Tokenizer, eot: int, window_len: int, dtype: np.dtype,
                report: Callable[[str], None]) -> np.ndarray:
    """One split's windows, refused when its documents cannot fill one."""
    report(f"tokenizing and packing {name} ({len(docs)} documents)")
    windows = _pack(tok, docs, eot, window_len, dtype)
    if len(windows) == 0:
        raise SaltError(f"the {name} split has fewer than seq_len + 1 = {window_len} tokens",
                        "use a smaller --seq-len or a larger corpus")
    return windows


def _fingerprint(tok_hash: str, seq_len: int, arrays: dict[str, np.ndarray]) -> str:
    """Dataset identity: tokenizer, window length and every window's ids (as uint32, dtype-independent)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{FORMAT}|{tok_hash}|{seq_len}".encode())
    for name in sorted(arrays):
        h.update(name.encode())
        for start in range(0, len(arrays[name]), 4096):
            h.update(np.ascontiguousarray(arrays[name][start : start + 4096]).astype("<u4").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class PrepareConfig(FlatConfig):
    """How ``salt prepare`` turns a corpus into a packed dataset."""

    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    """Which corpus to read."""
    seq_len: int = 128
    """Input tokens per window (windows hold seq_len+1)."""
    vocab_size: int = 8192
    """Vocabulary of the trained BPE tokenizer (ignored with a tokenizer)."""
    tokenizer: str | None = None
    """Use this tokenizer.json, or a model folder's tokenizer (a Hugging Face model's), instead of training one."""
    val_fraction: float = 0.05
    """Share of documents (by content hash) held out for validation."""
    holdout_fraction: float = 0.0
    """Share of documents (by content hash, disjoint from val) left out of the train split and written as a
    dataset of their own in ``<out>/holdout`` (its train split; the same val): data for a reference model
    that no run on the main dataset ever reads (``salt train --split holdout``). 0: no holdout."""
    dtype: Literal["auto", "uint16", "uint32"] = "auto"
    """Window dtype: auto (the narrowest that holds the vocabulary), uint16 or uint32."""

    def __post_init__(self) -> None:
        check_choices(self)
        if self.seq_len < 1:
            raise ConfigError(f"seq_len must be at least 1, got {self.seq_len}", "pass a positive --seq-len")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val fraction must be in (0, 1), got {self.val_fraction}",
                              "pass e.g. --val-fraction 0.05")
        if not 0.0 <= self.holdout_fraction < 1.0 or self.val_fraction + self.holdout_fraction >= 1.0:
            raise ConfigError(f"holdout fraction must be in [0, 1 - val fraction), got {self.holdout_fraction}",
                              "pass e.g. --holdout-fraction 0.1 (or 0 for no holdout)")


def prepare(
    spec: CorpusSpec | PrepareConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    report: Callable[[str], None] = log.info,
    **settings: Any,
) -> PackedDataset:
    """Read a corpus, train (or load) a tokenizer and write a packed dataset folder.

    Nothing is written at ``out`` unless every step succeeds: the folder is built in a temporary
    sibling and renamed into place at the end.

    Args:
        spec: which corpus to read (a ``CorpusSpec``), or the whole ``PrepareConfig``.
        out: the dataset folder to create.
        overwrite: replace an existing dataset folder.
        report: progress callback (one line per stage).
        settings: ``PrepareConfig`` settings by name (``seq_len=32``), over those of ``spec``.
    """
    cfg = (spec if isinstance(spec, PrepareConfig) else PrepareConfig(corpus=spec)).with_(**settings)
    out = Path(out)
    if out.exists() and not overwrite:
        raise SaltError(f"{out} already exists", "pass --overwrite to replace it or choose another --out")
    tok, eot = given_tokenizer(cfg.tokenizer) if cfg.tokenizer else (None, None)
    if tok is None:
        dtype_for_vocab(cfg.vocab_size, cfg.dtype)  # refuse an impossible dtype before the long work
    splits, duplicates = _read_splits(cfg, report)
    if tok is None:
        report(f"training byte-level BPE tokenizer, vocab {cfg.vocab_size}")
        tok = train_tokenizer((d.text for d in splits["train"]), vocab_size=cfg.vocab_size)
    eot = eot if eot is not None else eot_id(tok)
    dt_name = dtype_for_vocab(tok.get_vocab_size(), cfg.dtype)
    arrays = {name: _pack_split(name, docs, tok, eot, cfg.seq_len + 1, DTYPES[dt_name], report)
              for name, docs in splits.items()}
    holdout_docs, holdout = splits.pop("holdout", None), arrays.pop("holdout", None)
    manifest = _manifest(cfg, tok, eot, dt_name, splits, arrays, duplicates)
    nested: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}
    if holdout_docs is not None and holdout is not None:
        # The holdout is a dataset of its own (train: the holdout windows; val: the same val windows), so
        # training on it is training on a dataset, and the main dataset's train split never holds it.
        h_arrays = {"train": holdout, "val": arrays["val"]}
        h_manifest = _manifest(cfg, tok, eot, dt_name, {"train": holdout_docs, "val": splits["val"]}, h_arrays,
                               duplicates) | {"holdout_of": manifest["fingerprint"]}
        manifest["holdout"] = {"path": HOLDOUT_DIR, "windows": len(holdout), "documents": len(holdout_docs),
                               "fingerprint": h_manifest["fingerprint"]}
        nested[HOLDOUT_DIR] = (h_arrays, h_manifest)
    _write(out, tok, arrays, manifest, nested)
    ds = PackedDataset(out)
    held = f" / {len(holdout)} holdout" if holdout is not None else ""
    report(
        f"wrote {out}: {len(ds.train)} train / {len(ds.val)} val{held} windows of {cfg.seq_len + 1} tokens "
        f"({dt_name}, vocab {ds.vocab_size})"
    )
    return ds


def _read_splits(cfg: PrepareConfig, report: Callable[[str], None]) -> tuple[dict[str, list[Document]], int]:
    """The corpus's documents split train/val (and holdout) by content hash, exact duplicates dropped (and
    counted)."""
    spec = cfg.corpus
    report(f"reading corpus {spec.source}")
    seen: set[str] = set()
    splits: dict[str, list[Document]] = {"train": [], "val": []} | ({"holdout": []} if cfg.holdout_fraction else {})
    duplicates = 0
    for doc in iter_documents(spec):
        h = doc.hash
        if h in seen:
            duplicates += 1
            continue
        seen.add(h)
        splits[split_of(h, cfg.val_fraction, cfg.holdout_fraction)].append(doc)
    n_docs = len(seen)
    if n_docs == 0:
        raise SaltError(f"corpus {spec.source} has no non-empty documents", "point --source at some text")
    if not all(splits.values()):
        raise SaltError(
            f"corpus {spec.source} has {n_docs} document(s): too few to split {'/'.join(splits)}",
            "add documents or change --val-fraction" + (" / --holdout-fraction" if cfg.holdout_fraction else ""),
        )
    counts = ", ".join(f"{len(docs)} {name}" for name, docs in splits.items())
    report(f"{n_docs} documents ({counts}, {duplicates} duplicates dropped)")
    return splits, duplicates


def given_tokenizer(path: str | Path) -> tuple[Tokenizer, int]:
    """A tokenizer.json, or a model folder's tokenizer (a Hugging Face folder: its ``eos_token`` ends documents),
    with its end-of-text id."""
    p = Path(path)
    if p.is_dir() and (p / "config.json").is_file():
        from shared.hf import hf_tokenizer, is_hf_folder

        if is_hf_folder(p):
            return hf_tokenizer(p)
    tok = load_tokenizer(p)
    return tok, eot_id(tok)


def _manifest(cfg: PrepareConfig, tok: Tokenizer, eot: int, dt_name: str, splits: dict[str, list[Document]],
              arrays: dict[str, np.ndarray], duplicates: int) -> dict[str, Any]:
    tok_hash = tokenizer_hash(tok)
    return {
        "format": FORMAT,
        "seq_len": cfg.seq_len,
        "window_len": cfg.seq_len + 1,
        "dtype": dt_name,
        "vocab_size": tok.get_vocab_size(),
        "eot_id": eot,
        "tokenizer_hash": tok_hash,
        "val_fraction": cfg.val_fraction,
        "holdout_fraction": cfg.holdout_fraction,
        "corpus": cfg.corpus.describe(),
        "duplicates_dropped": duplicates,
        "splits": {
            name: {
                "file": f"{name}.bin",
                "hashes": f"{name}.hashes",
                "windows": len(arr),
                "documents": len(splits[name]),
                "tokens": int(arr.size),
            }
            for name, arr in arrays.items()
        },
        "fingerprint": _fingerprint(tok_hash, cfg.seq_len, arrays),
    }


def _write(out: Path, tok: Tokenizer, arrays: dict[str, np.ndarray], manifest: dict[str, Any],
           nested: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]) -> None:
    """The dataset folder (with its ``nested`` datasets, by sub-folder), built beside ``out`` and renamed into
    place once complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for sub, (sub_arrays, sub_manifest) in nested.items():
            (tmp / sub).mkdir()
            _write_files(tmp / sub, tok, sub_arrays, sub_manifest)
        _write_files(tmp, tok, arrays, manifest)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_files(folder: Path, tok: Tokenizer, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> None:
    for name, arr in arrays.items():
        arr.tofile(folder / f"{name}.bin")
        window_digests(arr).tofile(folder / f"{name}.hashes")
    (folder / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    # The manifest is written last: a folder without one is never taken for a dataset.
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` only after ``src`` is complete."""
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)
