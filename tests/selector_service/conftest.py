"""Fixtures of the selector service tests: apps on SQLite files or isolated PostgreSQL schemas, the tiny
SLM and database for tests below the API, and the helpers several test modules share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from selector_service import Settings, create_app
from selector_service.cache.slm import SLMRunner
from selector_service.domain.errors import DomainError
from selector_service.store.database import Database
from selector_service.store.tables import init_schema
from shared.data import PackedDataset


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


@pytest.fixture(scope="session")
def slm(tiny_checkpoint: Path) -> SLMRunner:
    """The tiny checkpoint loaded as the service loads it (for tests of the domain without HTTP)."""
    return SLMRunner(str(tiny_checkpoint))


def open_database(url: str) -> Iterator[Database]:
    """A database with the service's schema, disposed after the test."""
    database = Database(url, init_schema)
    database.ensure_ready()
    yield database
    database.dispose()


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    """A fresh SQLite database with the service's schema."""
    yield from open_database(sqlite_url)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A fresh database with the service's schema, on SQLite and on PostgreSQL."""
    yield from open_database(db_url)


def assert_error(r, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """The uniform error body with ``status`` (and ``code``); returns its ``error`` object."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def count_rows(url: str) -> list[tuple[str, str, str, int]]:
    """(model, window hash, params, rows) of every key of the cache table."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(
                "SELECT model, window_hash, params, count(*) FROM salt_cache GROUP BY model, window_hash, params"
            )))
    finally:
        engine.dispose()


def assert_refused(kind: str, code: str, fn, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    """Call a domain function expecting a DomainError of ``kind`` and ``code``; returns its message."""
    with pytest.raises(DomainError) as e:
        fn(*args, **kwargs)
    assert (e.value.kind, e.value.code) == (kind, code), e.value.message
    return e.value.message
