"""Open the cache database's schema at start-up through the Alembic migrations in ``migrations/``.

- an empty database is created at the head revision;
- a database of the last release before migrations (a ``salt_schema`` row of version 1, no
  ``alembic_version``) is stamped as revision ``0001`` (that release's schema) and upgraded in place;
- a database at a known older revision is upgraded in place; one at the head is left as it is;
- a database at a revision this code does not know (written by a newer service) is refused.

Everything runs in the caller's transaction; on PostgreSQL a transaction-level advisory lock serializes
replicas starting together, so one migrates and the others then find the head.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from shared.errors import SaltError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
LEGACY_REVISION = "0001"
"""The revision equal to the schema of the release before migrations (``salt_schema`` version 1)."""
LEGACY_VERSION = 1
PG_INIT_LOCK = 0x5A17C4C3  # advisory lock id serializing schema changes across replicas

log = logging.getLogger("selector_service")


def alembic_config(conn: Connection) -> Config:
    """An Alembic configuration (no ini file) whose ``env.py`` runs on ``conn``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision (None: never migrated)."""
    return MigrationContext.configure(conn).get_current_revision()


def init_schema(conn: Connection) -> None:
    """Bring the schema to the head revision (see the module docstring); SaltError when the database is
    newer than this code or of an unknown layout."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_INIT_LOCK})
    cfg = alembic_config(conn)
    script = ScriptDirectory.from_config(cfg)
    head = head_revision()
    current = current_revision(conn)
    if current is None:
        legacy = _legacy_version(conn)
        if legacy is not None:
            log.info("cache database of schema version %d (before migrations): stamping it %s", legacy,
                     LEGACY_REVISION)
            command.stamp(cfg, LEGACY_REVISION)
            current = LEGACY_REVISION
    elif not _known(script, current):
        raise SaltError(f"the cache database is at revision {current}, newer than this service ({head})",
                        "upgrade the service to the release that wrote this cache, or point SALT_DATABASE_URL "
                        "at another database")
    if current != head:
        log.info("migrating the cache database from %s to %s", current or "an empty database", head)
        command.upgrade(cfg, "head")


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _legacy_version(conn: Connection) -> int | None:
    """The ``salt_schema`` version of a database written before migrations; None when there is no such table."""
    if not inspect(conn).has_table("salt_schema"):
        return None
    found = conn.execute(text("SELECT version FROM salt_schema WHERE id = 1")).scalar()
    if found != LEGACY_VERSION:
        raise SaltError(f"the cache database has schema version {found} but no migration history",
                        "point SALT_DATABASE_URL at a new database, or at one written by this project's service")
    return int(found)
