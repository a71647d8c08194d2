"""Byte-level BPE tokenizer (HF ``tokenizers``), shared by teacher and student.

The end-of-text token separates documents in the packed stream; it is always id 0 in tokenizers
trained here, and looked up by name in tokenizers brought by the user.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from shared.errors import SaltError
from shared.hashing import bytes_hash

EOT = "<|endoftext|>"
MIN_VOCAB = 256 + 1  # every byte, plus the end-of-text token


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192) -> Tokenizer:
    """Train a byte-level BPE on an iterator of texts.

    Args:
        texts: training documents.
        vocab_size: target vocabulary size, at least 257 (all bytes + end-of-text).
    """
    if vocab_size < MIN_VOCAB:
        raise SaltError(f"vocab size {vocab_size} is too small", f"use at least {MIN_VOCAB}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return _ordinary(tok)


def _ordinary(tok: Tokenizer) -> Tokenizer:
    """Encode special-token text (a literal end-of-text marker in a document) as ordinary bytes.

    Only the packer places end-of-text ids, at document boundaries; otherwise a document that merely
    mentions the marker would be split in two and would not decode back to itself. The setting is not
    part of ``tokenizer.json``, so it is applied on every load.
    """
    tok.encode_special_tokens = True
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` (a file, or a folder that holds one) with a clear error on failure."""
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise SaltError(f"tokenizer file not found: {p}", "pass the path of a tokenizer.json")
    try:
        tok = Tokenizer.from_str(p.read_text(encoding="utf-8"))
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise SaltError(f"cannot read tokenizer {p}: not a valid tokenizer.json", "re-create it") from e
    return _ordinary(tok)


def eot_id(tok: Tokenizer) -> int:
    """Id of the end-of-text token; refuses a tokenizer without one."""
    i = tok.token_to_id(EOT)
    if i is None:
        raise SaltError(f"tokenizer has no {EOT} token", f"add {EOT} as a special token")
    return i


def tokenizer_hash(tok: Tokenizer) -> str:
    """Stable identity of a tokenizer: hash of its canonical JSON (key order and spacing ignored)."""
    canonical = json.dumps(json.loads(tok.to_str()), sort_keys=True, separators=(",", ":"))
    return bytes_hash("tokenizer", canonical)


def encode_batch(tok: Tokenizer, texts: list[str]) -> Iterator[list[int]]:
    """Token ids of each text (no special tokens added)."""
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        yield enc.ids
