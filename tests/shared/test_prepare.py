"""``prepare``: every bad input is refused with a message naming the problem, and nothing is left behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import shared.prepare as prepare_mod
from shared.corpus import CorpusSpec
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.prepare import prepare
from shared.tokenizer import train_tokenizer
from tests.conftest import make_corpus

KW = {"seq_len": 16, "vocab_size": 300, "val_fraction": 0.2}


def assert_nothing_left(out: Path) -> None:
    """No output folder, and no temporary or trash sibling of it."""
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


def refused(spec: CorpusSpec, out: Path, match: str, **kw: object) -> SaltError:
    with pytest.raises(SaltError, match=match) as info:
        prepare(spec, out, **{**KW, **kw})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert_nothing_left(out)
    return info.value


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus", n_docs=12, words=60)


def test_empty_corpus(tmp_path: Path) -> None:
    src = tmp_path / "blank"
    src.mkdir()
    (src / "a.txt").write_text("   \n\t\n", encoding="utf-8")
    (src / "b.txt").write_text("", encoding="utf-8")
    refused(CorpusSpec(source=str(src)), tmp_path / "out", "has no non-empty documents")


def test_missing_path(tmp_path: Path) -> None:
    refused(CorpusSpec(source=str(tmp_path / "nowhere")), tmp_path / "out", "corpus path does not exist: .*nowhere")


def test_unreadable_file(corpus: Path, tmp_path: Path) -> None:
    # Root reads any mode, so use a file that fails on read for every user: /proc/self/mem at offset 0.
    (corpus / "doc005.txt").unlink()
    (corpus / "doc005.txt").symlink_to("/proc/self/mem")
    refused(CorpusSpec(source=str(corpus)), tmp_path / "out", r"cannot read .*doc005\.txt: Input/output error")


def test_permission_denied(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "doc003.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    refused(CorpusSpec(source=str(corpus)), tmp_path / "out", r"cannot read .*doc003\.txt: Permission denied")


def test_non_utf8_text(corpus: Path, tmp_path: Path) -> None:
    (corpus / "doc007.txt").write_bytes(b"fine so far \xff\xfe then latin-1 caf\xe9\n")
    refused(CorpusSpec(source=str(corpus)), tmp_path / "out", r"doc007\.txt is not valid UTF-8 \(byte 12\)")


def test_seq_len_larger_than_corpus(corpus: Path, tmp_path: Path) -> None:
    refused(
        CorpusSpec(source=str(corpus)), tmp_path / "out", r"fewer than seq_len \+ 1 = 100001 tokens", seq_len=100_000
    )


def test_vocab_does_not_fit_dtype(corpus: Path, tmp_path: Path) -> None:
    refused(
        CorpusSpec(source=str(corpus)),
        tmp_path / "out",
        "vocab size 70000 does not fit in uint16",
        vocab_size=70_000,
        dtype="uint16",
    )


def test_other_bad_settings(corpus: Path, tmp_path: Path) -> None:
    spec = CorpusSpec(source=str(corpus))
    refused(spec, tmp_path / "out", "seq_len must be at least 1", seq_len=0)
    refused(spec, tmp_path / "out", r"val fraction must be in \(0, 1\)", val_fraction=1.0)
    refused(spec, tmp_path / "out", "unknown dtype 'int8'", dtype="int8")
    refused(spec, tmp_path / "out", "tokenizer file not found", tokenizer=tmp_path / "tok.json")


def test_too_few_documents_to_split(tmp_path: Path) -> None:
    src = make_corpus(tmp_path / "one", n_docs=1, words=400)
    refused(CorpusSpec(source=str(src)), tmp_path / "out", "1 document.*too few to split")


def test_failure_while_writing_removes_temp_folder(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(src: Path, dst: Path) -> None:
        assert (src / "manifest.json").is_file()  # the temp folder was complete
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prepare_mod, "_replace_dir", boom)
    with pytest.raises(OSError, match="No space left"):
        prepare(CorpusSpec(source=str(corpus)), tmp_path / "out", **KW)
    assert_nothing_left(tmp_path / "out")


def test_existing_output_needs_overwrite(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = prepare(CorpusSpec(source=str(corpus)), out, **KW)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SaltError, match=r"ds already exists \(pass --overwrite"):
        prepare(CorpusSpec(source=str(corpus)), out, **{**KW, "seq_len": 8})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert PackedDataset(out).fingerprint == first.fingerprint


def test_overwrite_replaces_dataset(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    old = prepare(CorpusSpec(source=str(corpus)), out, **KW)
    (out / "stray.txt").write_text("from the old folder", encoding="utf-8")
    new = prepare(CorpusSpec(source=str(corpus)), out, **{**KW, "seq_len": 8}, overwrite=True)
    assert new.seq_len == 8 and new.fingerprint != old.fingerprint
    reopened = PackedDataset(out)
    assert reopened.fingerprint == new.fingerprint
    assert reopened.train.windows.shape == (reopened.manifest["splits"]["train"]["windows"], 9)
    reopened.check_tokenizer(reopened.tokenizer())
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokenizer.json", "train.bin", "train.hashes",
                                                   "val.bin", "val.hashes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "ds"]  # no temp or trash folders


def test_failed_overwrite_keeps_old_dataset(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    old = prepare(CorpusSpec(source=str(corpus)), out, **KW)
    with pytest.raises(SaltError, match="fewer than seq_len"):
        prepare(CorpusSpec(source=str(corpus)), out, **{**KW, "seq_len": 100_000}, overwrite=True)
    assert PackedDataset(out).fingerprint == old.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "ds"]


def test_given_tokenizer_is_used(corpus: Path, tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    ds = prepare(
        CorpusSpec(source=str(corpus)), tmp_path / "ds", **KW, tokenizer=tiny_dataset.path / "tokenizer.json"
    )
    assert ds.tokenizer_hash == tiny_dataset.tokenizer_hash


def test_tokenizer_mismatch_is_refused(tiny_dataset: PackedDataset) -> None:
    other = train_tokenizer(["some other text entirely, 1234567890"] * 3, vocab_size=290)
    with pytest.raises(SaltError, match=f"does not match the dataset {tiny_dataset.path}"):
        tiny_dataset.check_tokenizer(other)


def test_dataset_folder_damage_is_refused(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    ds = tmp_path / "copy"
    shutil.copytree(tiny_dataset.path, ds)
    assert PackedDataset(ds).fingerprint == tiny_dataset.fingerprint

    with open(ds / "train.bin", "r+b") as f:
        f.truncate(os.path.getsize(ds / "train.bin") - 2)
    with pytest.raises(SaltError, match=r"train\.bin is missing or has the wrong size"):
        PackedDataset(ds)

    (ds / "manifest.json").write_text("{garbage", encoding="utf-8")
    with pytest.raises(SaltError, match=r"manifest\.json is corrupt"):
        PackedDataset(ds)

    (ds / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SaltError, match=r"manifest\.json is corrupt"):
        PackedDataset(ds)

    (ds / "manifest.json").write_text(json.dumps({"format": "other"}), encoding="utf-8")
    with pytest.raises(SaltError, match="has format 'other'"):
        PackedDataset(ds)

    (ds / "manifest.json").unlink()
    with pytest.raises(SaltError, match="not a prepared dataset"):
        PackedDataset(ds)


def test_dataset_tokenizer_file_swapped_is_refused(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    ds = tmp_path / "copy"
    shutil.copytree(tiny_dataset.path, ds)
    train_tokenizer(["unrelated words"] * 3, vocab_size=270).save(str(ds / "tokenizer.json"))
    with pytest.raises(SaltError, match=r"tokenizer\.json does not match the dataset"):
        PackedDataset(ds).tokenizer()
    assert np.asarray(PackedDataset(ds).train[0]).shape == (tiny_dataset.window_len,)


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: m.pop("splits"),
        lambda m: m["splits"].pop("val"),
        lambda m: m["splits"]["train"].pop("windows"),
        lambda m: m.update(dtype="float32"),
        lambda m: m.pop("seq_len"),
        lambda m: m.update(splits=[]),
        lambda m: m.pop("tokenizer_hash"),
        lambda m: m.pop("fingerprint"),
    ],
    ids=[
        "no-splits",
        "no-val",
        "no-windows",
        "bad-dtype",
        "no-seq-len",
        "splits-not-a-dict",
        "no-tok-hash",
        "no-fingerprint",
    ],
)
def test_manifest_missing_fields_is_refused(tiny_dataset: PackedDataset, tmp_path: Path, damage) -> None:
    ds = tmp_path / "copy"
    shutil.copytree(tiny_dataset.path, ds)
    manifest = json.loads((ds / "manifest.json").read_text(encoding="utf-8"))
    damage(manifest)
    (ds / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(SaltError, match=r"manifest\.json is corrupt"):
        PackedDataset(ds)


def test_literal_end_of_text_in_a_document_is_ordinary_text(tmp_path: Path) -> None:
    src = make_corpus(tmp_path / "corpus", n_docs=12, words=60)
    for p in sorted(src.glob("*.txt")):
        text = p.read_text(encoding="utf-8")
        p.write_text(text.replace("fox", "<|endoftext|>") + 'EOT = "<|endoftext|>"\n', encoding="utf-8")
    ds = prepare(CorpusSpec(source=str(src)), tmp_path / "ds", **KW)
    tok = ds.tokenizer()
    for name in ("train", "val"):
        split = ds.split(name)
        n_eot = int((np.asarray(split.windows) == ds.eot_id).sum())
        # Only document boundaries are end-of-text tokens (the stream's tail may be cut off).
        assert n_eot <= ds.manifest["splits"][name]["documents"]
        assert "<|endoftext|>" in tok.decode([int(i) for i in np.asarray(split.windows).ravel()])
