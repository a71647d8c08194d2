"""The schema of the last release before migrations (salt_schema version 1), frozen here as it was.

A database written by that release has these tables and a ``salt_schema`` row but no ``alembic_version``;
the service stamps it with this revision and upgrades it from here.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str, length: int = 64) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False)


def _key(name: str, length: int = 32) -> sa.Column:
    return sa.Column(name, sa.String(length), primary_key=True)


def _blob() -> list[sa.Column]:
    return [sa.Column("blob", sa.LargeBinary, nullable=False), _text("checksum", 32)]


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.Float, nullable=False)


def upgrade() -> None:
    op.create_table("salt_cache", _key("model", 64), _key("window_hash"), _key("params", 48), *_blob(),
                    _created_at())
    schema = op.create_table("salt_schema", sa.Column("id", sa.Integer, primary_key=True),
                             sa.Column("version", sa.Integer, nullable=False))
    op.create_table("salt_pool", _key("id"), _text("name"), _text("dataset_fingerprint"), _text("tokenizer_hash"),
                    sa.Column("window_len", sa.Integer, nullable=False), sa.Column("count", sa.Integer, nullable=True),
                    sa.Column("sealed", sa.Boolean, nullable=False), _created_at())
    op.create_table("salt_pool_window", _key("pool_id"), sa.Column("idx", sa.Integer, primary_key=True),
                    _text("window_hash", 32), sa.Column("tokens", sa.LargeBinary, nullable=False))
    op.create_table("salt_job", _key("id"), sa.Column("pool_id", sa.String(32), nullable=False), _text("model"),
                    _text("status", 16), sa.Column("done", sa.Integer, nullable=False),
                    sa.Column("total", sa.Integer, nullable=False), sa.Column("error", sa.String(500), nullable=True),
                    _created_at(), sa.Column("updated_at", sa.Float, nullable=False))
    op.create_index("ix_salt_job_pool_id", "salt_job", ["pool_id"])
    op.create_table("salt_selection", _key("id"), _text("pool_id", 32), _text("model"), _text("dataset_fingerprint"),
                    _text("tokenizer_hash"), _text("method", 16), sa.Column("count", sa.Integer, nullable=False),
                    _text("params", 2000), *_blob(), _created_at())
    op.bulk_insert(schema, [{"id": 1, "version": 1}])


def downgrade() -> None:
    for table in ("salt_selection", "salt_job", "salt_pool_window", "salt_pool", "salt_schema", "salt_cache"):
        op.drop_table(table)
