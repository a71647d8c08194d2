"""The holdout split: documents carved out of train by content hash, written as a dataset of their own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from shared.config import ConfigError
from shared.corpus import CorpusSpec, is_val, split_of
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.prepare import PrepareConfig, prepare
from shared.tokenizer import EOT

SEQ_LEN = 32


def _doc_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _prepare(corpus: Path, out: Path, holdout: float) -> PackedDataset:
    return prepare(CorpusSpec(source=str(corpus)), out, seq_len=SEQ_LEN, vocab_size=300, val_fraction=0.2,
                   holdout_fraction=holdout)


@pytest.fixture(scope="module")
def with_holdout(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> PackedDataset:
    return _prepare(tiny_corpus, tmp_path_factory.mktemp("holdout") / "ds", 0.3)


def test_split_rule_keeps_val_and_carves_the_holdout_from_train_only() -> None:
    hashes = [_doc_hash(f"document {i}") for i in range(4000)]
    splits = [split_of(h, 0.2, 0.1) for h in hashes]
    assert splits == [split_of(h, 0.2, 0.1) for h in hashes]  # content alone decides
    assert [s == "val" for s in splits] == [is_val(h, 0.2) for h in hashes]  # val as without a holdout
    assert 0.07 < splits.count("holdout") / len(hashes) < 0.13
    without = [split_of(h, 0.2) for h in hashes]
    assert "holdout" not in without
    # Every holdout document was a train document before: the holdout only shrinks train.
    assert all(w == "train" for s, w in zip(splits, without, strict=True) if s == "holdout")


def _stream(ds: PackedDataset, texts: list[str]) -> np.ndarray:
    tok = ds.tokenizer()
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for text in sorted(texts, key=_doc_hash):
        ids += [*tok.encode(text, add_special_tokens=False).ids, eot]
    n = len(ids) // (SEQ_LEN + 1)
    return np.array(ids[: n * (SEQ_LEN + 1)], dtype=np.int64).reshape(n, SEQ_LEN + 1)


def test_holdout_is_a_dataset_of_the_held_out_documents(tiny_corpus: Path, with_holdout: PackedDataset) -> None:
    ds = with_holdout
    held = PackedDataset(ds.holdout_path())
    texts = [p.read_text(encoding="utf-8") for p in sorted(tiny_corpus.glob("*.txt"))]
    by_split: dict[str, list[str]] = {"train": [], "val": [], "holdout": []}
    for text in texts:
        by_split[split_of(_doc_hash(text), 0.2, 0.3)].append(text)
    assert all(by_split.values())
    # Each split's windows are exactly its documents' stream: disjoint by document, not only by window.
    assert np.array_equal(np.asarray(ds.train.windows, dtype=np.int64), _stream(ds, by_split["train"]))
    assert np.array_equal(np.asarray(held.train.windows, dtype=np.int64), _stream(ds, by_split["holdout"]))
    assert not set(ds.train.hashes) & set(held.train.hashes)
    assert held.val.hashes == ds.val.hashes and held.tokenizer_hash == ds.tokenizer_hash
    assert held.manifest["holdout_of"] == ds.fingerprint != held.fingerprint
    assert ds.manifest["holdout"]["documents"] == len(by_split["holdout"])
    assert ds.manifest["holdout"]["fingerprint"] == held.fingerprint
    assert ds.manifest["splits"]["train"]["documents"] == len(by_split["train"])


def test_holdout_is_deterministic_and_leaves_val_as_it_was(
    tiny_corpus: Path, tiny_dataset: PackedDataset, with_holdout: PackedDataset, tmp_path: Path
) -> None:
    again = _prepare(tiny_corpus, tmp_path / "again", 0.3)
    assert again.fingerprint == with_holdout.fingerprint
    assert PackedDataset(again.holdout_path()).fingerprint == PackedDataset(with_holdout.holdout_path()).fingerprint
    # The same corpus without a holdout (the tiny_dataset fixture): the same val documents; its train
    # documents are the train and holdout ones here (the windows differ: the tokenizer learns from train).
    without, held = tiny_dataset.manifest["splits"], with_holdout.manifest["splits"]
    assert without["val"]["documents"] == held["val"]["documents"]
    assert without["train"]["documents"] == held["train"]["documents"] + with_holdout.manifest["holdout"]["documents"]
    assert tiny_dataset.manifest.get("holdout") is None


def test_a_dataset_without_a_holdout_says_how_to_get_one(tiny_dataset: PackedDataset) -> None:
    with pytest.raises(SaltError, match="has no holdout split") as e:
        tiny_dataset.holdout_path()
    assert e.value.fix is not None and "--holdout-fraction" in e.value.fix


@pytest.mark.parametrize("fraction", [-0.1, 0.8, 1.0])
def test_holdout_fraction_is_checked(fraction: float) -> None:
    with pytest.raises(ConfigError, match="holdout fraction"):
        PrepareConfig(val_fraction=0.2, holdout_fraction=fraction)
