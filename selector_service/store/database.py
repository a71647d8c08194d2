"""The database of the cache and the pools: a SQLite file (default, WAL) or PostgreSQL.

Every connection goes through ``Database.connect`` or ``Database.transaction``, which open the schema
once (lazily, so an outage at start-up never kills the process) and turn a lost or refused connection
into ``DatabaseUnavailable`` (answered as 503 with Retry-After). Inserts that may repeat go through
``insert_ignoring_conflicts``: replicas writing the same keys never error or duplicate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.dml import Insert

ROWS_PER_STATEMENT = 500
"""Rows (or keys) per statement of a bulk insert or lookup: well under SQLite's bound-parameter limit."""

SchemaInit = Callable[[Connection], None]
"""Creates or checks the schema inside one transaction (``tables.init_schema``)."""


class DatabaseUnavailable(Exception):
    """The database cannot be reached now (answered as 503 with Retry-After)."""


def insert_ignoring_conflicts(conn: Connection, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``table`` in the dialect of ``conn``."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a SQLite file (WAL, busy timeout) or a PostgreSQL URL."""
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


class Database:
    """Connections to one database whose schema ``init_schema`` opens on first use.

    Args:
        url: SQLAlchemy URL (``sqlite:///file`` or ``postgresql+psycopg://...``).
        init_schema: creates the schema or migrates it to the head revision; it may raise SaltError (newer).
    """

    def __init__(self, url: str, init_schema: SchemaInit) -> None:
        self.engine = make_engine(url)
        self._init_schema = init_schema
        self._ready = False
        self._lock = threading.Lock()

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for logs and error messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def ensure_ready(self) -> None:
        """Create or check the schema once; raises DatabaseUnavailable or SaltError (wrong version)."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                with self.engine.begin() as conn:
                    self._init_schema(conn)
            except (OperationalError, DBAPIError) as e:
                if isinstance(e, DBAPIError) and not _is_connection_error(e):
                    raise
                raise DatabaseUnavailable(str(e.orig) if e.orig else str(e)) from e
            self._ready = True

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers a query now."""
        try:
            with self.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection for reads (autobegin, rolled back at the end)."""
        return self._guarded(self.engine.connect)

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction, committed when the block ends without an error."""
        return self._guarded(self.engine.begin)

    def dispose(self) -> None:
        self.engine.dispose()

    def _guarded(self, open_: Callable[[], AbstractContextManager[Connection]]) -> _Guard:
        self.ensure_ready()
        try:
            return _Guard(open_())
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e


class _Guard(AbstractContextManager[Connection]):
    """Turns failures to connect or to commit, and operational errors inside the block, into
    DatabaseUnavailable; any other error of a statement (a bug, not an outage) passes unchanged."""

    def __init__(self, cm: AbstractContextManager[Connection]) -> None:
        self.cm = cm

    def __enter__(self) -> Connection:
        try:
            return self.cm.__enter__()
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> bool:
        try:
            self.cm.__exit__(kind, error, tb)
        except (OperationalError, DBAPIError) as e:
            raise DatabaseUnavailable(str(e)) from e
        if kind is not None and issubclass(kind, OperationalError):
            raise DatabaseUnavailable(str(error)) from error
        return False


def _is_connection_error(e: DBAPIError) -> bool:
    return bool(e.connection_invalidated) or isinstance(e, OperationalError)
