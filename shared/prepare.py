"""``salt prepare``: corpus -> tokenizer -> packed dataset folder, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from shared.corpus import CorpusSpec, Document, is_val, iter_documents
from shared.data import DTYPES, FORMAT, PackedDataset, dtype_for_vocab
from shared.errors import SaltError
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


def _fingerprint(tok_hash: str, seq_len: int, arrays: dict[str, np.ndarray]) -> str:
    """Dataset identity: tokenizer, window length and every window's ids (as uint32, dtype-independent)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{FORMAT}|{tok_hash}|{seq_len}".encode())
    for name in sorted(arrays):
        h.update(name.encode())
        for start in range(0, len(arrays[name]), 4096):
            h.update(np.ascontiguousarray(arrays[name][start : start + 4096]).astype("<u4").tobytes())
    return h.hexdigest()


def prepare(
    spec: CorpusSpec,
    out: str | Path,
    *,
    seq_len: int = 128,
    vocab_size: int = 8192,
    tokenizer_path: str | Path | None = None,
    val_fraction: float = 0.05,
    dtype: str = "auto",
    overwrite: bool = False,
    report: Callable[[str], None] = log.info,
) -> PackedDataset:
    """Read a corpus, train (or load) a tokenizer and write a packed dataset folder.

    Nothing is written at ``out`` unless every step succeeds: the folder is built in a temporary
    sibling and renamed into place at the end.

    Args:
        spec: which corpus to read.
        out: the dataset folder to create.
        seq_len: tokens of input per window (windows hold ``seq_len + 1`` ids).
        vocab_size: vocabulary of a newly trained tokenizer (ignored with ``tokenizer_path``).
        tokenizer_path: an existing ``tokenizer.json`` to use instead of training one.
        val_fraction: share of documents (by content hash) held out for validation.
        dtype: ``auto`` (narrowest that fits), ``uint16`` or ``uint32``.
        overwrite: replace an existing dataset folder.
        report: progress callback (one line per stage).
    """
    out = Path(out)
    if seq_len < 1:
        raise SaltError(f"seq_len must be at least 1, got {seq_len}", "pass a positive --seq-len")
    if not 0.0 < val_fraction < 1.0:
        raise SaltError(f"val fraction must be in (0, 1), got {val_fraction}", "pass e.g. --val-fraction 0.05")
    if out.exists() and not overwrite:
        raise SaltError(f"{out} already exists", "pass --overwrite to replace it or choose another --out")
    tok = load_tokenizer(tokenizer_path) if tokenizer_path else None
    if tok is None:
        dtype_for_vocab(vocab_size, dtype)  # refuse an impossible dtype before the long work

    report(f"reading corpus {spec.source}")
    seen: set[str] = set()
    splits: dict[str, list[Document]] = {"train": [], "val": []}
    duplicates = 0
    for doc in iter_documents(spec):
        h = doc.hash
        if h in seen:
            duplicates += 1
            continue
        seen.add(h)
        splits["val" if is_val(h, val_fraction) else "train"].append(doc)
    n_docs = len(seen)
    if n_docs == 0:
        raise SaltError(f"corpus {spec.source} has no non-empty documents", "point --source at some text")
    if not splits["train"] or not splits["val"]:
        raise SaltError(
            f"corpus {spec.source} has {n_docs} document(s): too few to split train/val",
            "add documents or change --val-fraction",
        )
    n_train, n_val = len(splits["train"]), len(splits["val"])
    report(f"{n_docs} documents ({n_train} train, {n_val} val, {duplicates} duplicates dropped)")

    if tok is None:
        report(f"training byte-level BPE tokenizer, vocab {vocab_size}")
        tok = train_tokenizer((d.text for d in splits["train"]), vocab_size=vocab_size)
    vocab = tok.get_vocab_size()
    dt_name = dtype_for_vocab(vocab, dtype)
    eot = eot_id(tok)

    arrays: dict[str, np.ndarray] = {}
    for name, docs in splits.items():
        report(f"tokenizing and packing {name} ({len(docs)} documents)")
        arrays[name] = _pack(tok, docs, eot, seq_len + 1, DTYPES[dt_name])
        if len(arrays[name]) == 0:
            raise SaltError(
                f"the {name} split has fewer than seq_len + 1 = {seq_len + 1} tokens",
                "use a smaller --seq-len or a larger corpus",
            )

    tok_hash = tokenizer_hash(tok)
    manifest = {
        "format": FORMAT,
        "seq_len": seq_len,
        "window_len": seq_len + 1,
        "dtype": dt_name,
        "vocab_size": vocab,
        "eot_id": eot,
        "tokenizer_hash": tok_hash,
        "val_fraction": val_fraction,
        "corpus": spec.describe(),
        "duplicates_dropped": duplicates,
        "splits": {
            name: {
                "file": f"{name}.bin",
                "windows": len(arr),
                "documents": len(splits[name]),
                "tokens": int(arr.size),
            }
            for name, arr in arrays.items()
        },
        "fingerprint": _fingerprint(tok_hash, seq_len, arrays),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name, arr in arrays.items():
            arr.tofile(tmp / f"{name}.bin")
        (tmp / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
        # The manifest is written last: a folder without one is never taken for a dataset.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ds = PackedDataset(out)
    report(
        f"wrote {out}: {len(ds.train)} train / {len(ds.val)} val windows of {seq_len + 1} tokens "
        f"({dt_name}, vocab {vocab})"
    )
    return ds


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` only after ``src`` is complete."""
    if dst.exists():
        trash = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, trash)
        os.replace(src, dst)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)
