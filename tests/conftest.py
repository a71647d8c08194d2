"""Shared fixtures: a tiny corpus, a packed dataset and a random-init checkpoint, built once per session."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from shared.checkpoint import save_model
from shared.corpus import CorpusSpec
from shared.data import PackedDataset
from shared.model import GPT, GPTConfig
from shared.prepare import prepare

WORDS = (
    "the quick brown fox jumps over lazy dog while small models teach large ones to read code and "
    "text with care def return import class for in if else print value list dict"
).split()


def make_corpus(folder: Path, n_docs: int = 40, words: int = 200, seed: int = 0) -> Path:
    """Write ``n_docs`` small pseudo-text files into ``folder`` (deterministic)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        (folder / f"doc{i:03d}.txt").write_text(f"# document {i}\n{text}\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_dataset(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> PackedDataset:
    out = tmp_path_factory.mktemp("data") / "ds"
    return prepare(CorpusSpec(source=str(tiny_corpus)), out, seq_len=32, vocab_size=300, val_fraction=0.2)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: PackedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ``slm-tiny`` checkpoint that shares the tiny dataset's tokenizer."""
    torch.manual_seed(0)
    tok = tiny_dataset.tokenizer()
    cfg = GPTConfig.from_preset("slm-tiny", vocab_size=tok.get_vocab_size(), block_size=64)
    folder = tmp_path_factory.mktemp("ckpt") / "slm"
    save_model(folder, GPT(cfg), tok)
    return folder


DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL_ENV = "SALT_TEST_DATABASE_URL"
"""The PostgreSQL server the cache tests use (default: the local one, ``DEFAULT_PG_URL``)."""
PG_REQUIRED_ENV = "SALT_TEST_REQUIRE_POSTGRES"
"""Set (CI sets it): a PostgreSQL test that finds no server fails instead of skipping."""


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL server for the tests: an admin URL and the endpoint a proxy forwards to."""

    url: str
    """SQLAlchemy URL of a database the tests may create schemas in."""
    endpoint: tuple[str, int] | str
    """(host, port) over TCP, or the path of its Unix socket."""


def via_port(url: str, port: int) -> str:
    """``url`` (of any of the test servers) reached on 127.0.0.1:``port`` instead (through a proxy)."""
    u = sa.make_url(url).set(host="127.0.0.1", port=port)
    return u.set(query={k: v for k, v in u.query.items() if k != "host"}).render_as_string(hide_password=False)


def _in_schema(url: str, schema: str | None) -> str:
    """``url`` whose connections use ``schema`` first on the search path."""
    if schema is None:
        return url
    u = sa.make_url(url)
    return u.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def _answers(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _private_postgres(folder: Path) -> Postgres | None:
    """A private server of the pip-installed ``pgserver`` package (a dev dependency), on a Unix socket."""
    try:
        import pgserver
    except ImportError:
        return None
    server = pgserver.get_server(folder, cleanup_mode="stop")
    url = sa.make_url(server.get_uri()).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return Postgres(url, _endpoint(url))


def _endpoint(url: str) -> tuple[str, int] | str:
    """Where a server URL connects: (host, port), or the Unix socket of a ``?host=/dir`` URL."""
    u = sa.make_url(url)
    socket_dir = u.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        return f"{socket_dir}/.s.PGSQL.{u.port or 5432}"
    return (u.host or "127.0.0.1", u.port or 5432)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Postgres:
    """The PostgreSQL server: ``SALT_TEST_DATABASE_URL``, else the local one, else a private ``pgserver``.

    With none, the test skips with one line saying how to enable it, or fails where
    ``SALT_TEST_REQUIRE_POSTGRES`` is set (as CI sets it).
    """
    url = os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
    if _answers(url):
        return Postgres(url, _endpoint(url))
    private = None if os.environ.get(PG_URL_ENV) else _private_postgres(tmp_path_factory.mktemp("pg"))
    if private is not None and _answers(private.url):
        return private
    message = (f"PostgreSQL tests need a server: nothing answers at {url}; start one there, set {PG_URL_ENV}, "
               "or pip install pgserver")
    if os.environ.get(PG_REQUIRED_ENV):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def pg_url(postgres: Postgres) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    schema = f"salt_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _in_schema(postgres.url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
