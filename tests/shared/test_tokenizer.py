"""Tokenizer: lossless round trip and a hash that survives save/load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from shared.errors import SaltError
from shared.tokenizer import EOT, eot_id, load_tokenizer, tokenizer_hash, train_tokenizer

TRAIN = [
    "def add(a, b):\n    return a + b\n",
    "the quick brown fox jumps over the lazy dog\n",
    "Größe, naïve café — 東京 and emoji 🦊🐍\n",
] * 5

SAMPLES = [
    "plain ascii text",
    "Ünïcödé: ĀĒĪŌŪ, 日本語テキスト, русский, العربية, emoji 🦊🐍👩‍💻",
    'class Foo:\n\tdef bar(self, x: int) -> str:\n\t\treturn f"{x!r}\\n"  # comment\n',
    "  leading and trailing spaces  \n\n\r\n",
    "symbols ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./ and a NUL \x00 byte",
    f'SEP = "{EOT}"  # code that mentions the end-of-text marker is still ordinary text',
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(TRAIN, vocab_size=300)


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_decode_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False).ids
    assert ids, "a non-empty text gives tokens"
    assert all(0 <= i < tok.get_vocab_size() for i in ids)
    assert eot_id(tok) not in ids
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_after_save_and_load(tok: Tokenizer, text: str, tmp_path: Path) -> None:
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    ids = loaded.encode(text, add_special_tokens=False).ids
    assert ids == tok.encode(text, add_special_tokens=False).ids
    assert eot_id(loaded) not in ids
    assert loaded.decode(ids) == text


def test_trained_tokenizer_has_eot_at_zero_and_requested_vocab(tok: Tokenizer) -> None:
    assert eot_id(tok) == 0
    assert tok.id_to_token(0) == EOT
    assert 257 <= tok.get_vocab_size() <= 300


def test_hash_stable_across_save_and_load(tok: Tokenizer, tmp_path: Path) -> None:
    h = tokenizer_hash(tok)
    assert len(h) == 32 and int(h, 16) >= 0
    tok.save(str(tmp_path / "tokenizer.json"))
    assert tokenizer_hash(load_tokenizer(tmp_path / "tokenizer.json")) == h
    assert tokenizer_hash(load_tokenizer(tmp_path)) == h  # a folder holding tokenizer.json
    # Re-serialised with other key order and spacing: same identity.
    data = json.loads(tok.to_str())
    (tmp_path / "pretty.json").write_text(json.dumps(data, indent=4, sort_keys=True), encoding="utf-8")
    assert tokenizer_hash(load_tokenizer(tmp_path / "pretty.json")) == h


def test_hash_is_deterministic_and_distinguishes_tokenizers(tok: Tokenizer) -> None:
    assert tokenizer_hash(train_tokenizer(TRAIN, vocab_size=300)) == tokenizer_hash(tok)
    assert tokenizer_hash(train_tokenizer(TRAIN, vocab_size=280)) != tokenizer_hash(tok)


def test_vocab_too_small_is_refused() -> None:
    with pytest.raises(SaltError, match="vocab size 100 is too small"):
        train_tokenizer(TRAIN, vocab_size=100)


def test_bad_tokenizer_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SaltError, match="tokenizer file not found"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SaltError, match=r"not a valid tokenizer\.json"):
        load_tokenizer(bad)


def test_tokenizer_without_eot_is_refused() -> None:
    from tokenizers import models

    with pytest.raises(SaltError, match=re.escape(f"has no {EOT} token")):
        eot_id(Tokenizer(models.BPE()))
