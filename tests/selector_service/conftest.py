"""Fixtures of the selector service tests: apps on SQLite files or isolated PostgreSQL schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from selector_service import Settings, create_app
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
