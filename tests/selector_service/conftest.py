"""Fixtures of the selector service tests: apps on SQLite files or isolated PostgreSQL schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from selector_service import Settings, create_app
from shared.data import PackedDataset

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cache.sqlite'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each cache test runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def make_client(checkpoint: Path, db_url: str, **overrides) -> TestClient:
    settings = Settings(model_path=str(checkpoint), database_url=db_url, **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(tiny_checkpoint: Path, sqlite_url: str) -> Iterator[TestClient]:
    with make_client(tiny_checkpoint, sqlite_url) as c:
        yield c


@pytest.fixture(scope="session")
def windows(tiny_dataset: PackedDataset) -> np.ndarray:
    """(8, 33) int64 windows of the tiny dataset."""
    return np.asarray(tiny_dataset.split("train").windows[:8], dtype=np.int64)
