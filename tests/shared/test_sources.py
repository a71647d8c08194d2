"""Corpus sources: a folder, JSON lines, Parquet and the built-in stdlib corpus give the same kind of data."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.corpus import CorpusSpec, iter_documents, stdlib_files
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.prepare import prepare

KW = {"seq_len": 32, "vocab_size": 300, "val_fraction": 0.2}  # as in the tiny_dataset fixture


def _texts(corpus: Path) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(corpus.glob("*.txt"))]


def test_jsonl_source_matches_folder(tiny_corpus: Path, tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    lines = [json.dumps({"body": t, "id": i}) for i, t in enumerate(_texts(tiny_corpus))]
    lines.insert(3, "")  # blank lines are skipped
    lines.append(json.dumps({"body": "   \n"}))  # whitespace-only documents are skipped
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")

    docs = list(iter_documents(CorpusSpec(source=str(src), text_field="body")))
    assert [d.text for d in docs] == _texts(tiny_corpus)
    assert docs[0].origin == f"{src}:1" and docs[3].origin == f"{src}:5"

    ds = prepare(CorpusSpec(source=str(src), text_field="body"), tmp_path / "ds", **KW)
    assert ds.manifest["corpus"]["source"] == str(src)
    assert ds.manifest["corpus"]["text_field"] == "body"
    assert ds.train.hashes == tiny_dataset.train.hashes
    assert ds.fingerprint == tiny_dataset.fingerprint


def test_parquet_source_matches_folder(tiny_corpus: Path, tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    texts = _texts(tiny_corpus)
    src = tmp_path / "docs.parquet"
    table = pa.table({"n": list(range(len(texts) + 1)), "text": [*texts[:5], None, *texts[5:]]})
    pq.write_table(table, src, row_group_size=7)  # several row groups; a null row is skipped

    docs = list(iter_documents(CorpusSpec(source=str(src))))
    assert [d.text for d in docs] == texts
    assert docs[5].origin == f"{src}#row7"

    ds = prepare(CorpusSpec(source=str(src)), tmp_path / "ds", **KW)
    assert ds.val.hashes == tiny_dataset.val.hashes
    assert ds.fingerprint == tiny_dataset.fingerprint


def test_max_docs_limits_non_empty_documents(tiny_corpus: Path) -> None:
    docs = list(iter_documents(CorpusSpec(source=str(tiny_corpus), max_docs=4)))
    assert [d.text for d in docs] == _texts(tiny_corpus)[:4]


def test_stdlib_source_is_sorted_and_leaves_out_tests() -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    assert len(files) > 100
    rel = [p.relative_to(root).as_posix() for p in files]
    assert rel == sorted(rel)
    assert all(r.endswith(".py") for r in rel)
    assert not any(
        part in {"site-packages", "test", "tests", "__pycache__"} or part.startswith("test_")
        for r in rel
        for part in r.split("/")
    )
    assert "json/decoder.py" in rel

    docs = list(iter_documents(CorpusSpec(source="stdlib", max_docs=5)))
    assert len(docs) == 5
    assert all(d.text.strip() for d in docs)
    assert [d.origin for d in docs] == [str(p) for p in files if p.read_text(encoding="utf-8").strip()][:5]


def test_stdlib_source_prepares(tmp_path: Path) -> None:
    ds = prepare(
        CorpusSpec(source="stdlib", max_docs=30), tmp_path / "std", seq_len=64, vocab_size=300, val_fraction=0.3
    )
    m = ds.manifest
    assert m["corpus"] == {"source": "stdlib", "glob": "**/*.txt", "text_field": "text", "max_docs": 30}
    assert m["splits"]["train"]["documents"] + m["splits"]["val"]["documents"] + m["duplicates_dropped"] == 30
    assert len(ds.train) > 0 and len(ds.val) > 0
    assert ds.train.windows.shape[1] == 65
    # Same input, same dataset.
    again = prepare(
        CorpusSpec(source="stdlib", max_docs=30), tmp_path / "std2", seq_len=64, vocab_size=300, val_fraction=0.3
    )
    assert again.fingerprint == ds.fingerprint


def test_jsonl_bad_rows_are_named(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(SaltError, match=r"bad\.jsonl:2 is not valid JSON"):
        list(iter_documents(CorpusSpec(source=str(src))))
    src.write_text('{"text": "fine"}\n{"other": "x"}\n', encoding="utf-8")
    with pytest.raises(SaltError, match=r"bad\.jsonl:2 has no string field 'text'"):
        list(iter_documents(CorpusSpec(source=str(src))))
    src.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(SaltError, match=r"bad\.jsonl:2 is not valid UTF-8"):
        list(iter_documents(CorpusSpec(source=str(src))))


def test_parquet_bad_inputs_are_named(tmp_path: Path) -> None:
    src = tmp_path / "t.parquet"
    pq.write_table(pa.table({"body": ["a"]}), src)
    with pytest.raises(SaltError, match=r"has no column 'text' \(columns: body\)"):
        list(iter_documents(CorpusSpec(source=str(src))))
    pq.write_table(pa.table({"text": [1, 2]}), src)
    with pytest.raises(SaltError, match=r"row1: column 'text' is not text"):
        list(iter_documents(CorpusSpec(source=str(src))))
    src.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SaltError, match=r"cannot read .* as Parquet"):
        list(iter_documents(CorpusSpec(source=str(src))))


def test_unsupported_file_and_empty_glob(tmp_path: Path) -> None:
    (tmp_path / "corpus.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(SaltError, match="unsupported corpus file"):
        list(iter_documents(CorpusSpec(source=str(tmp_path / "corpus.csv"))))
    with pytest.raises(SaltError, match=r"no files match '\*\*/\*\.md'"):
        list(iter_documents(CorpusSpec(source=str(tmp_path), glob="**/*.md")))


def test_max_docs_zero_reads_nothing(tiny_corpus: Path) -> None:
    assert list(iter_documents(CorpusSpec(source=str(tiny_corpus), max_docs=0))) == []


def test_max_docs_stops_reading(tiny_corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    texts = _texts(tiny_corpus)
    for i, text in enumerate(texts[:6]):
        (folder / f"{i}.txt").write_text(text, encoding="utf-8")
    (folder / "2.txt").write_text(" \n", encoding="utf-8")  # blank: does not count
    (folder / "9.txt").write_bytes(b"\xff never read")
    docs = list(iter_documents(CorpusSpec(source=str(folder), max_docs=5)))
    assert [d.text for d in docs] == [texts[0], texts[1], texts[3], texts[4], texts[5]]
    with pytest.raises(SaltError, match="not valid UTF-8"):
        list(iter_documents(CorpusSpec(source=str(folder), max_docs=6)))
