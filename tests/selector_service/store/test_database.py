"""The database and the cache rows, on a SQLite file and on the real PostgreSQL (an isolated schema per
test): idempotent inserts, outages reported as DatabaseUnavailable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from selector_service.store.cache_rows import Row, get_rows, put_rows
from selector_service.store.database import Database, DatabaseUnavailable, insert_ignoring_conflicts
from selector_service.store.tables import SCHEMA_VERSION, init_schema, schema
from shared.blobs.labels import checksum
from tests.selector_service.conftest import count_rows


def test_inserts_are_idempotent(db_url: str) -> None:
    database = Database(db_url, init_schema)
    rows = [Row(f"h{i}", "scores", b"x", checksum(b"x")) for i in range(3)]
    put_rows(database=database, model="m", rows=rows)
    put_rows(database=database, model="m", rows=[*rows, Row("h9", "scores", b"y", checksum(b"y"))])
    got = get_rows(database=database, model="m", params=["scores"], hashes=["h0", "h1", "h9", "nope"])
    assert sorted(h for h, _ in got) == ["h0", "h1", "h9"]
    assert len(count_rows(db_url)) == 4
    database.dispose()


def test_plain_sql_lookups_find_what_the_compiled_statement_finds(db_url: str) -> None:
    database = Database(db_url, init_schema)
    rows = [Row(f"h{i}", p, f"{p}{i}".encode(), checksum(f"{p}{i}".encode()))
            for i in range(7) for p in ("scores", "labels:k=8:t=1.0", "sample:n=16:t=1.0")]
    put_rows(database=database, model="m", rows=rows)
    put_rows(database=database, model="other", rows=[Row("h1", "scores", b"o", checksum(b"o"))])
    quote = "h' OR '1'='1"  # a value is a bound parameter, never SQL
    for params in (["scores"], ["scores", "labels:k=8:t=1.0"], ["nope"]):
        for hashes in (["h0", "h3", "h3", "h6", "missing", quote], [f"h{i}" for i in range(7)], []):
            plain = get_rows(database=database, model="m", params=params, hashes=hashes)
            assert plain == get_rows(database=database, model="m", params=params, hashes=hashes, compiled=True)
            assert sorted(plain) == sorted((h, p) for h in set(hashes) for p in params
                                           if (h, p) in {(r.window_hash, r.params) for r in rows})
            assert all(row.blob == f"{p}{h[1:]}".encode() for (h, p), row in plain.items())
    many = [f"x{i}" for i in range(1200)] + ["h2"]  # more keys than one statement takes
    assert list(get_rows(database=database, model="m", params=["scores"], hashes=many)) == [("h2", "scores")]
    database.dispose()


def test_an_unreachable_database_is_unavailable_never_a_crash() -> None:
    database = Database("postgresql+psycopg://postgres@127.0.0.1:1/test", init_schema)  # nothing listens on 1
    for use in (database.ensure_ready, database.ping, database.connect, database.transaction):
        with pytest.raises(DatabaseUnavailable):
            use()
    assert "127.0.0.1:1" in database.display_url
    database.dispose()


def test_insert_ignoring_conflicts_keeps_the_first_row_on_both_dialects(db_url: str) -> None:
    database = Database(db_url, init_schema)
    with database.transaction() as conn:  # the schema row (id 1) is there already
        conn.execute(insert_ignoring_conflicts(conn, schema).values(id=1, version=SCHEMA_VERSION + 5))
        conn.execute(insert_ignoring_conflicts(conn, schema), [{"id": 2, "version": 7}, {"id": 2, "version": 8}])
    with database.connect() as conn:
        assert conn.execute(sa.select(schema.c.id, schema.c.version).order_by(schema.c.id)).all() == [
            (1, SCHEMA_VERSION), (2, 7)]
    database.dispose()


def test_a_failing_statement_is_its_own_error_not_an_outage(db_url: str) -> None:
    """Only lost connections become DatabaseUnavailable (503); a statement's own error (a bug) is not masked."""
    database = Database(db_url, init_schema)
    with pytest.raises(sa.exc.IntegrityError), database.transaction() as conn:
        conn.execute(sa.insert(schema).values(id=1, version=SCHEMA_VERSION))
    database.ping()
    database.dispose()
