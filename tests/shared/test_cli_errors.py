"""``salt prepare`` on bad input: non-zero exit, one ``error: ...`` line naming the problem, no output left."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.data import PackedDataset
from tests.conftest import make_corpus
from trainer.cli import app

runner = CliRunner()


def salt_prepare(source: Path | str, out: Path, *extra: str) -> tuple[int, str]:
    args = [
        "prepare",
        "--source",
        str(source),
        "--out",
        str(out),
        "--seq-len",
        "16",
        "--vocab-size",
        "300",
        "--val-fraction",
        "0.2",
        *extra,
    ]
    result = runner.invoke(app, args)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def assert_one_error_line(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus", n_docs=12, words=60)


def _blank(tmp_path: Path) -> Path:
    src = tmp_path / "blank"
    src.mkdir()
    (src / "a.txt").write_text("  \n\n", encoding="utf-8")
    return src


def _non_utf8(corpus: Path) -> Path:
    (corpus / "doc002.txt").write_bytes(b"caf\xe9\n")
    return corpus


def _unreadable(corpus: Path) -> Path:
    (corpus / "doc004.txt").unlink()
    (corpus / "doc004.txt").symlink_to("/proc/self/mem")
    return corpus


@pytest.mark.parametrize(
    ("make_source", "extra", "needles"),
    [
        (lambda tmp, c: _blank(tmp), [], ["has no non-empty documents"]),
        (lambda tmp, c: tmp / "nowhere", [], ["corpus path does not exist", "nowhere"]),
        (lambda tmp, c: _unreadable(c), [], ["cannot read", "doc004.txt"]),
        (lambda tmp, c: _non_utf8(c), [], ["doc002.txt is not valid UTF-8"]),
        (lambda tmp, c: c, ["--seq-len", "100000"], ["fewer than seq_len + 1 = 100001 tokens"]),
        (lambda tmp, c: c, ["--dtype", "uint16", "--vocab-size", "70000"], ["vocab size 70000 does not fit in uint16"]),
        (lambda tmp, c: c, ["--dtype", "int8"], ["unknown dtype 'int8'"]),
    ],
    ids=["empty", "missing", "unreadable", "non-utf8", "seq-len", "dtype-vocab", "dtype-unknown"],
)
def test_prepare_bad_input(tmp_path: Path, corpus: Path, make_source, extra: list[str], needles: list[str]) -> None:
    out = tmp_path / "out"
    code, stderr = salt_prepare(make_source(tmp_path, corpus), out, *extra)
    assert code != 0
    assert_one_error_line(stderr, *needles)
    assert_nothing_left(out)


def test_prepare_existing_output_and_overwrite(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "ds"
    code, stderr = salt_prepare(corpus, out)
    assert code == 0, stderr
    first = PackedDataset(out)

    code, stderr = salt_prepare(corpus, out, "--seq-len", "8")
    assert code != 0
    assert_one_error_line(stderr, f"{out} already exists", "--overwrite")
    assert PackedDataset(out).fingerprint == first.fingerprint

    code, stderr = salt_prepare(corpus, out, "--seq-len", "8", "--overwrite")
    assert code == 0, stderr
    again = PackedDataset(out)
    assert again.seq_len == 8 and again.fingerprint != first.fingerprint
    assert len(again.train) > 0 and len(again.val) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "ds"]


def test_presets_lists_every_preset() -> None:
    result = runner.invoke(app, ["presets", "--vocab-size", "300", "--block-size", "32"])
    assert result.exit_code == 0
    for name in ("slm-tiny", "slm", "llm"):
        assert any(line.split()[0] == name for line in result.stdout.splitlines()[1:])
