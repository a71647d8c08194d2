"""The cache schema's migrations, on SQLite and PostgreSQL: an empty database is created at the head, a
cache written by the last release before migrations (the committed fixture) is upgraded in place with every
row kept and served as a cache hit, a newer database is refused, and replicas starting together on one
PostgreSQL database migrate it once."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient

from selector_service.store.codec import unpack_tokens
from selector_service.store.database import Database
from selector_service.store.migrate import current_revision, head_revision
from selector_service.store.tables import SCHEMA_VERSION, init_schema, metadata
from shared.errors import SaltError
from tests.selector_service.conftest import make_client

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"
MANIFEST = json.loads((V1 / "manifest.json").read_text())
V1_TABLES = ("salt_cache", "salt_schema", "salt_pool", "salt_pool_window", "salt_job", "salt_selection")


def _rows(url: str, table: str) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")))
    finally:
        engine.dispose()


def _v1_cache(db_url: str, tmp_path: Path) -> str:
    """The fixture's cache in ``db_url``'s database: the SQLite file copied, or (PostgreSQL) that release's
    DDL run and every row of the SQLite file copied over."""
    if db_url.startswith("sqlite"):
        shutil.copy(V1 / "cache.sqlite", tmp_path / "cache.sqlite")
        return db_url
    source = sa.create_engine(f"sqlite:///{V1 / 'cache.sqlite'}")
    target = sa.create_engine(db_url)
    old = sa.MetaData()
    with source.connect() as src, target.begin() as dst:
        for statement in (V1 / "postgresql.sql").read_text().split(";\n"):
            if statement.strip():
                dst.exec_driver_sql(statement)
        old.reflect(dst, only=V1_TABLES)
        for name in V1_TABLES:
            rows = [dict(r) for r in src.execute(sa.text(f"SELECT * FROM {name}")).mappings()]
            for r in rows:
                if name == "salt_pool":
                    r["sealed"] = bool(r["sealed"])
            if rows:
                dst.execute(old.tables[name].insert(), rows)
    source.dispose()
    target.dispose()
    return db_url


def test_an_empty_database_is_created_at_the_head_equal_to_the_tables(db_url: str) -> None:
    database = Database(db_url, init_schema)
    database.ensure_ready()
    with database.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert conn.execute(sa.text("SELECT version FROM salt_schema")).scalar_one() == SCHEMA_VERSION
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []  # migrations == tables.py
    database.dispose()
    again = Database(db_url, init_schema)  # a second start finds the head and changes nothing
    again.ensure_ready()
    again.dispose()


def test_the_last_release_cache_is_upgraded_in_place_and_served_as_hits(
        db_url: str, tmp_path: Path) -> None:
    url = _v1_cache(db_url, tmp_path)
    before = {t: _rows(url, t) for t in V1_TABLES if t != "salt_schema"}
    assert len(before["salt_cache"]) == MANIFEST["rows"]["salt_cache"] == 28
    with make_client(V1 / "slm", url, warmup=False) as c:
        _ask_everything_again(c)
        assert c.get(f"/v1/selections/{MANIFEST['selection_id']}").status_code == 200
        job = c.get(f"/v1/jobs/{MANIFEST['job_id']}").json()
        assert (job["status"], job["done"], job["total"]) == ("done", 12, 12)
        metrics = c.get("/metrics").text
    assert _metric(metrics, "salt_windows_computed_total") == 0  # nothing recomputed
    assert {t: _rows(url, t) for t in before} == before  # nothing lost or changed
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert conn.execute(sa.text("SELECT version FROM salt_schema")).scalar_one() == SCHEMA_VERSION
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def _ask_everything_again(c: TestClient) -> None:
    """Scores of every pool window and the labels asked in the fixture, all answered from the cache."""
    engine = sa.create_engine(str(c.app.state.settings.database_url))  # type: ignore[attr-defined]
    with engine.connect() as conn:
        tokens = conn.execute(sa.text("SELECT tokens FROM salt_pool_window WHERE pool_id = :p ORDER BY idx"),
                              {"p": MANIFEST["pool_id"]}).scalars().all()
    engine.dispose()
    windows = [np.asarray(unpack_tokens(bytes(t))).tolist() for t in tokens]
    assert len(windows) == MANIFEST["windows"]
    r = c.post("/v1/scores", json={"windows": windows})
    assert r.status_code == 200, r.text
    labels = MANIFEST["labels"]
    r = c.post("/v1/soft-labels", json={"windows": windows[: labels["windows"]], "k": labels["k"]})
    assert r.status_code == 200, r.text
    assert _metric(c.get("/metrics").text, "salt_cache_hits_total") == len(windows) + labels["windows"]


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_database_newer_than_the_service_is_refused(db_url: str) -> None:
    database = Database(db_url, init_schema)
    database.ensure_ready()
    with database.transaction() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dface'"))
    database.dispose()
    with pytest.raises(SaltError) as e:
        Database(db_url, init_schema).ensure_ready()
    assert str(e.value).splitlines()[0].startswith(
        f"the cache database is at revision f00dface, newer than this service ({head_revision()})")
    assert "upgrade the service" in e.value.fix


def test_a_schema_version_without_history_is_refused(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE salt_schema (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO salt_schema VALUES (1, 7)"))
    engine.dispose()
    with pytest.raises(SaltError, match="schema version 7 but no migration history"):
        Database(sqlite_url, init_schema).ensure_ready()


def test_replicas_starting_together_migrate_once(pg_url: str, tmp_path: Path) -> None:
    url = _v1_cache(pg_url, tmp_path)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        database = Database(url, init_schema)
        try:
            barrier.wait()
            database.ensure_ready()
        except BaseException as e:
            errors.append(e)
        finally:
            database.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _rows(url, "alembic_version") == [(head_revision(),)]
    assert len(_rows(url, "salt_cache")) == 28


def test_a_job_the_last_release_left_running_is_finished_after_the_upgrade(sqlite_url: str, tmp_path: Path) -> None:
    """A job of the old release killed mid-way (no chunks then) is split and finished by the upgraded service,
    from the cache, without being asked again."""
    url = _v1_cache(sqlite_url, tmp_path)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE salt_job SET status = 'running', done = 5"))
    engine.dispose()
    with make_client(V1 / "slm", url, warmup=False, job_chunk_windows=5) as c:
        for _ in range(500):
            if (job := c.get(f"/v1/jobs/{MANIFEST['job_id']}").json())["status"] == "done":
                break
            time.sleep(0.02)
        metrics = c.get("/metrics").text
    assert (job["status"], job["done"], job["total"]) == ("done", 12, 12)
    assert _metric(metrics, "salt_windows_computed_total") == 0
    assert [(r[2], r[3]) for r in _rows(url, "salt_job_chunk")] == [(0, 5), (5, 10), (10, 12)]
