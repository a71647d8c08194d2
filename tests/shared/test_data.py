"""Packed datasets: window layout, identities, dtype independence and split stability."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from shared.corpus import CorpusSpec, is_val
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.hashing import window_hash
from shared.prepare import prepare
from shared.tokenizer import EOT, tokenizer_hash

SEQ_LEN = 32  # as in the tiny_dataset fixture
VAL_FRACTION = 0.2
GOLDEN_IDS = [0, 1, 255, 256, 65535, 7]
# blake2b(digest_size=16) of GOLDEN_IDS packed as six little-endian uint32: must never drift.
GOLDEN_HEX = "48919fd0d9ab9a7f27256f4b8269491f"


def _doc_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _expected_streams(corpus: Path, ds: PackedDataset) -> dict[str, list[int]]:
    """Re-tokenize the corpus files: per split, documents sorted by content hash, each followed by EOT."""
    tok = ds.tokenizer()
    eot = tok.token_to_id(EOT)
    texts = [p.read_text(encoding="utf-8") for p in sorted(corpus.glob("*.txt"))]
    streams: dict[str, list[int]] = {"train": [], "val": []}
    for text in sorted(texts, key=_doc_hash):
        split = "val" if is_val(_doc_hash(text), VAL_FRACTION) else "train"
        streams[split] += [*tok.encode(text, add_special_tokens=False).ids, eot]
    return streams


def test_golden_window_hash() -> None:
    independent = hashlib.blake2b(struct.pack("<6I", *GOLDEN_IDS), digest_size=16).hexdigest()
    assert independent == GOLDEN_HEX
    assert window_hash(GOLDEN_IDS) == GOLDEN_HEX
    assert window_hash(np.array(GOLDEN_IDS, dtype=np.uint32)) == GOLDEN_HEX
    assert window_hash(np.array(GOLDEN_IDS, dtype=np.uint16)) == GOLDEN_HEX
    assert window_hash(np.array(GOLDEN_IDS, dtype=">u2")) == GOLDEN_HEX  # byte order of storage is irrelevant
    assert window_hash(np.array(GOLDEN_IDS, dtype=np.int64)) == GOLDEN_HEX
    assert window_hash(GOLDEN_IDS[::-1]) != GOLDEN_HEX


def test_window_hash_rejects_bad_windows() -> None:
    with pytest.raises(ValueError, match="1-D"):
        window_hash(np.zeros((2, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match="uint32"):
        window_hash([1, -1])
    with pytest.raises(ValueError, match="uint32"):
        window_hash([1, 1 << 32])


def test_split_rule_depends_on_content_only() -> None:
    hashes = [_doc_hash(f"document {i}") for i in range(2000)]
    share = sum(is_val(h, 0.2) for h in hashes) / len(hashes)
    assert 0.15 < share < 0.25
    assert [is_val(h, 0.2) for h in hashes] == [is_val(h, 0.2) for h in hashes]


def test_windows_are_the_hash_ordered_stream(tiny_corpus: Path, tiny_dataset: PackedDataset) -> None:
    ds = tiny_dataset
    W = SEQ_LEN + 1
    streams = _expected_streams(tiny_corpus, ds)
    for name in ("train", "val"):
        stream = np.array(streams[name], dtype=np.int64)
        split = ds.split(name)
        n = len(stream) // W
        assert n > 0
        assert len(split) == n
        assert split.windows.shape == (n, W)
        np.testing.assert_array_equal(np.asarray(split.windows, dtype=np.int64), stream[: n * W].reshape(n, W))

        batch = split.batch(list(range(n)))
        assert batch.shape == (n, W) and str(batch.dtype) == "torch.int64"
        inputs, targets = batch[:, :-1].numpy(), batch[:, 1:].numpy()
        assert inputs.shape == targets.shape == (n, SEQ_LEN)
        for i in range(n):
            np.testing.assert_array_equal(inputs[i], stream[i * W : i * W + SEQ_LEN])
            np.testing.assert_array_equal(targets[i], stream[i * W + 1 : i * W + 1 + SEQ_LEN])
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])  # targets are inputs shifted by one

        # A batch picks rows in the order asked for, and single rows agree with the batch.
        picked = split.batch(np.array([n - 1, 0]))
        np.testing.assert_array_equal(picked.numpy(), batch.numpy()[[n - 1, 0]])
        np.testing.assert_array_equal(split[0], batch[0].numpy())


def test_manifest_is_consistent(tiny_corpus: Path, tiny_dataset: PackedDataset) -> None:
    ds = tiny_dataset
    m = json.loads((ds.path / "manifest.json").read_text(encoding="utf-8"))
    tok = ds.tokenizer()
    streams = _expected_streams(tiny_corpus, ds)
    assert m["seq_len"] == ds.seq_len == SEQ_LEN
    assert m["window_len"] == ds.window_len == SEQ_LEN + 1
    assert m["dtype"] == "uint16"  # vocab 300 fits
    assert m["vocab_size"] == ds.vocab_size == tok.get_vocab_size()
    assert m["eot_id"] == ds.eot_id == tok.token_to_id(EOT)
    assert m["tokenizer_hash"] == ds.tokenizer_hash
    assert m["val_fraction"] == VAL_FRACTION
    assert m["corpus"]["source"] == str(tiny_corpus)
    assert len(m["fingerprint"]) == 32 and m["fingerprint"] == ds.fingerprint
    n_docs = {"train": 0, "val": 0}
    for p in tiny_corpus.glob("*.txt"):
        n_docs["val" if is_val(_doc_hash(p.read_text(encoding="utf-8")), VAL_FRACTION) else "train"] += 1
    for name in ("train", "val"):
        info = m["splits"][name]
        assert info["documents"] == n_docs[name]
        assert info["windows"] == len(ds.split(name)) == len(streams[name]) // (SEQ_LEN + 1)
        assert info["tokens"] == info["windows"] * (SEQ_LEN + 1)
        assert (ds.path / info["file"]).stat().st_size == info["tokens"] * 2
    assert sum(n_docs.values()) == m["splits"]["train"]["documents"] + m["splits"]["val"]["documents"]


def test_hashes_match_window_contents(tiny_dataset: PackedDataset) -> None:
    split = tiny_dataset.train
    hashes = split.hashes
    assert len(hashes) == len(split)
    for i in (0, len(split) - 1):
        ids = [int(x) for x in split[i]]
        expected = hashlib.blake2b(struct.pack(f"<{len(ids)}I", *ids), digest_size=16).hexdigest()
        assert split.hash(i) == hashes[i] == expected
    assert len(set(hashes)) == len(hashes)  # pseudo-random text: no two windows alike


def test_reopening_gives_the_same_dataset(tiny_dataset: PackedDataset) -> None:
    again = PackedDataset(tiny_dataset.path)
    assert again.fingerprint == tiny_dataset.fingerprint
    assert again.train.hashes == tiny_dataset.train.hashes
    assert again.val.hashes == tiny_dataset.val.hashes


def test_dtype_does_not_change_identities(tiny_corpus: Path, tmp_path: Path) -> None:
    spec = CorpusSpec(source=str(tiny_corpus))
    kw = {"seq_len": SEQ_LEN, "vocab_size": 300, "val_fraction": VAL_FRACTION}
    a = prepare(spec, tmp_path / "u16", dtype="uint16", **kw)
    b = prepare(spec, tmp_path / "u32", dtype="uint32", **kw)
    assert a.manifest["dtype"] == "uint16" and b.manifest["dtype"] == "uint32"
    assert a.train.windows.dtype.itemsize == 2 and b.train.windows.dtype.itemsize == 4
    assert (tmp_path / "u32" / "train.bin").stat().st_size == 2 * (tmp_path / "u16" / "train.bin").stat().st_size
    assert a.train.hashes == b.train.hashes
    assert a.val.hashes == b.val.hashes
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.train.batch([0, 1]).numpy(), b.train.batch([0, 1]).numpy())


def test_split_ignores_file_names_and_order(tiny_corpus: Path, tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted(tiny_corpus.glob("*.txt"))]
    random.Random(1).shuffle(texts)
    shuffled = tmp_path / "shuffled"
    for i, text in enumerate(texts):
        # New names, in a new order, some in subfolders (the default glob is recursive).
        sub = shuffled / ("deep" if i % 3 == 0 else "") / f"{random.Random(i).getrandbits(32):08x}.txt"
        sub.parent.mkdir(parents=True, exist_ok=True)
        sub.write_text(text, encoding="utf-8")
    ds = prepare(
        CorpusSpec(source=str(shuffled)), tmp_path / "ds", seq_len=SEQ_LEN, vocab_size=300, val_fraction=VAL_FRACTION
    )
    assert ds.tokenizer_hash == tiny_dataset.tokenizer_hash
    assert ds.train.hashes == tiny_dataset.train.hashes
    assert ds.val.hashes == tiny_dataset.val.hashes
    assert ds.fingerprint == tiny_dataset.fingerprint


def test_duplicate_documents_are_dropped(tiny_corpus: Path, tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    folder = tmp_path / "dups"
    folder.mkdir()
    for p in sorted(tiny_corpus.glob("*.txt")):
        text = p.read_text(encoding="utf-8")
        (folder / p.name).write_text(text, encoding="utf-8")
        (folder / f"copy-{p.name}").write_text(text, encoding="utf-8")
    ds = prepare(
        CorpusSpec(source=str(folder)), tmp_path / "ds", seq_len=SEQ_LEN, vocab_size=300, val_fraction=VAL_FRACTION
    )
    assert ds.manifest["duplicates_dropped"] == len(list(tiny_corpus.glob("*.txt")))
    assert ds.fingerprint == tiny_dataset.fingerprint


def test_check_tokenizer_accepts_own_and_tokenizer_hash_matches(tiny_dataset: PackedDataset) -> None:
    tok = tiny_dataset.tokenizer()
    tiny_dataset.check_tokenizer(tok)  # no error
    assert tokenizer_hash(tok) == tiny_dataset.tokenizer_hash


def test_window_hashes_are_written_once_and_read_back(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    import json
    import shutil

    from shared.hashing import window_hash

    split = tiny_dataset.train
    assert split.digests is not None and split.digests.shape == (len(split), 16)
    assert split.hashes == [window_hash(w) for w in split.windows]
    # A dataset written before the hashes files: still read, its hashes computed from the windows.
    old = tmp_path / "old"
    shutil.copytree(tiny_dataset.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for info in manifest["splits"].values():
        (old / info.pop("hashes")).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    legacy = PackedDataset(old)
    assert legacy.train.digests is None and legacy.train.hashes == split.hashes
    # A truncated hashes file is refused with the fix.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset.path, broken)
    (broken / "train.hashes").write_bytes((broken / "train.hashes").read_bytes()[:-1])
    with pytest.raises(SaltError, match=r"train.hashes is missing or has the wrong size"):
        PackedDataset(broken)
