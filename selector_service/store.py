"""The cache: one table of compressed, checksummed blobs in SQLite (default, WAL) or PostgreSQL.

A row's key is (model, window hash, params): ``model`` is the SLM fingerprint with the inference
precision, ``params`` is ``scores`` (scores and embedding) or ``labels:k=<k>:t=<temperature>``.
Inserts are ``ON CONFLICT DO NOTHING``: replicas writing the same keys never error or duplicate.
The schema carries a version (table ``salt_schema``) checked at start-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.errors import SaltError

SCHEMA_VERSION = 1
_PG_INIT_LOCK = 0x5A17C4C3  # advisory lock id serializing table creation across replicas

metadata = MetaData()
cache = Table(
    "salt_cache",
    metadata,
    Column("model", String(64), primary_key=True),
    Column("window_hash", String(32), primary_key=True),
    Column("params", String(48), primary_key=True),
    Column("blob", LargeBinary, nullable=False),
    Column("checksum", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)
schema = Table(
    "salt_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)


class DatabaseUnavailable(Exception):
    """The cache database cannot be reached now (answered as 503 with Retry-After)."""


@dataclass(frozen=True)
class Row:
    window_hash: str
    params: str
    blob: bytes
    checksum: str


def labels_params(k: int, temperature: float) -> str:
    """The ``params`` key part of soft labels."""
    return f"labels:k={k}:t={float(temperature)!r}"


SCORES_PARAMS = "scores"


def make_engine(url: str) -> Engine:
    """An engine for a SQLite file (WAL, busy timeout) or a PostgreSQL URL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8,
                         connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})


class Store:
    """Data access to the cache; opens the schema lazily so a database outage never kills the process."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._ready = False
        self._lock = threading.Lock()

    def ensure_ready(self) -> None:
        """Create or check the schema once; raises DatabaseUnavailable or SaltError (wrong version)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                with self.engine.begin() as conn:
                    init_schema(conn)
            except (OperationalError, DBAPIError) as e:
                if isinstance(e, DBAPIError) and not _is_connection_error(e):
                    raise
                raise DatabaseUnavailable(str(e.orig) if e.orig else str(e)) from e
            self._ready = True

    def ping(self) -> None:
        try:
            self.ensure_ready()
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e

    def get(self, *, model: str, params: Iterable[str], hashes: Iterable[str]) -> dict[tuple[str, str], Row]:
        """Rows found for every (hash, params) pair asked, keyed by (hash, params)."""
        params, hashes = list(set(params)), list(set(hashes))
        out: dict[tuple[str, str], Row] = {}
        with self._connect() as conn:
            for i in range(0, len(hashes), 500):
                stmt = select(cache.c.window_hash, cache.c.params, cache.c.blob, cache.c.checksum).where(
                    cache.c.model == model, cache.c.params.in_(params), cache.c.window_hash.in_(hashes[i : i + 500])
                )
                for h, p, blob, ck in conn.execute(stmt):
                    out[(h, p)] = Row(h, p, bytes(blob), ck)
        return out

    def put(self, *, model: str, rows: list[Row], replace: Iterable[tuple[str, str]] = ()) -> None:
        """Insert rows, keeping any row already there; rows keyed in ``replace`` overwrite (bad blobs)."""
        if not rows:
            return
        replace = set(replace)
        now = time.time()
        values = [
            {"model": model, "window_hash": r.window_hash, "params": r.params, "blob": r.blob,
             "checksum": r.checksum, "created_at": now}
            for r in rows
        ]
        with self._connect(begin=True) as conn:
            ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            for i in range(0, len(values), 500):
                conn.execute(ins(cache).on_conflict_do_nothing(), values[i : i + 500])
            for r in rows:
                if (r.window_hash, r.params) in replace:
                    conn.execute(
                        update(cache)
                        .where(cache.c.model == model, cache.c.window_hash == r.window_hash,
                               cache.c.params == r.params)
                        .values(blob=r.blob, checksum=r.checksum, created_at=now)
                    )

    def dispose(self) -> None:
        self.engine.dispose()

    def _connect(self, begin: bool = False):  # type: ignore[no-untyped-def]
        self.ensure_ready()
        try:
            return _Guard(self.engine.begin() if begin else self.engine.connect())
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e


class _Guard:
    """Context manager that turns connection failures into DatabaseUnavailable."""

    def __init__(self, cm) -> None:  # type: ignore[no-untyped-def]
        self.cm = cm

    def __enter__(self) -> Connection:
        try:
            return self.cm.__enter__()
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e

    def __exit__(self, *exc) -> bool:  # type: ignore[no-untyped-def]
        try:
            self.cm.__exit__(*exc)
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e
        if exc[0] is not None and issubclass(exc[0], OperationalError):
            raise DatabaseUnavailable(str(exc[1])) from exc[1]
        return False


def _is_connection_error(e: DBAPIError) -> bool:
    return bool(e.connection_invalidated) or isinstance(e, OperationalError)


def init_schema(conn: Connection) -> None:
    """Create the tables if missing (serialized across replicas on PostgreSQL), then check the version."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_INIT_LOCK})
    metadata.create_all(conn, checkfirst=True)
    found = conn.execute(select(schema.c.version).where(schema.c.id == 1)).scalar()
    if found is None:
        ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(ins(schema).values(id=1, version=SCHEMA_VERSION).on_conflict_do_nothing())
    elif found != SCHEMA_VERSION:
        raise SaltError(
            f"the cache database has schema version {found}, this service expects {SCHEMA_VERSION}",
            "point SALT_DATABASE_URL at a new database or migrate the old one",
        )
