"""Shared fixtures: a tiny corpus, a packed dataset and a random-init checkpoint, built once per session."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
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


PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_schema_url(schema: str) -> str:
    """A URL whose connections use ``schema`` first on the search path."""
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards (a missing PostgreSQL fails the test)."""
    schema = f"salt_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
