"""Every table of the service, and the schema's creation and version check.

``salt_cache`` holds one compressed, checksummed blob per (model, window hash, params): ``model`` is the
SLM fingerprint with the inference precision, ``params`` is ``scores`` (scores and embedding) or
``labels:k=<k>:t=<temperature>``. Beside it: pools of windows (``salt_pool``, ``salt_pool_window``),
scoring jobs (``salt_job``) and their leased chunks (``salt_job_chunk``), and stored selections
(``salt_selection``). The schema is created and upgraded by the Alembic migrations (``store/migrate.py``);
these definitions are the head revision's, and a test keeps them equal. ``salt_schema`` still carries a
version, so releases from before migrations refuse a cache upgraded since.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, LargeBinary, MetaData, String, Table

from selector_service.store.migrate import init_schema

__all__ = ["init_schema", "metadata"]

SCHEMA_VERSION = 2
"""The ``salt_schema`` version the head revision writes (releases before migrations expect 1)."""

metadata = MetaData()


def _key(name: str, length: int = 32) -> Column:
    return Column(name, String(length), primary_key=True)


def _text(name: str, length: int = 64) -> Column:
    return Column(name, String(length), nullable=False)


def _blob_columns() -> list[Column]:
    """A compressed blob and the blake2b-128 checksum (hex) checked on every read."""
    return [Column("blob", LargeBinary, nullable=False), _text("checksum", 32)]


def _fingerprint_columns() -> list[Column]:
    return [_text("dataset_fingerprint"), _text("tokenizer_hash")]


def _created_at() -> Column:
    return Column("created_at", Float, nullable=False)


cache = Table(
    "salt_cache", metadata,
    _key("model", 64), _key("window_hash"), _key("params", 48), *_blob_columns(), _created_at(),
)
schema = Table(
    "salt_schema", metadata,
    Column("id", Integer, primary_key=True), Column("version", Integer, nullable=False),
)
pools = Table(
    "salt_pool", metadata,
    _key("id"), _text("name"), *_fingerprint_columns(),
    Column("window_len", Integer, nullable=False),
    Column("count", Integer, nullable=True),
    Column("sealed", Boolean, nullable=False, default=False),
    _created_at(),
)
pool_windows = Table(
    "salt_pool_window", metadata,
    _key("pool_id"), Column("idx", Integer, primary_key=True), _text("window_hash", 32),
    Column("tokens", LargeBinary, nullable=False),
)
jobs = Table(
    "salt_job", metadata,
    _key("id"), Column("pool_id", String(32), nullable=False, index=True), _text("model"), _text("status", 16),
    Column("done", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("error", String(500), nullable=True),
    _created_at(),
    Column("updated_at", Float, nullable=False),
)
job_chunks = Table(
    "salt_job_chunk", metadata,
    _key("job_id"), Column("idx", Integer, primary_key=True),
    Column("start", Integer, nullable=False), Column("stop", Integer, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("done_by", String(32), nullable=True),
    Column("lease_owner", String(32), nullable=True),
    Column("lease_expires", Float, nullable=True),
)
selections = Table(
    "salt_selection", metadata,
    _key("id"), _text("pool_id", 32), _text("model"), *_fingerprint_columns(), _text("method", 16),
    Column("count", Integer, nullable=False),
    _text("params", 2000),
    *_blob_columns(),
    _created_at(),
)
