"""Leased chunks of scoring jobs (``salt_job_chunk``), so every replica works on the same job.

A chunk is a range [start, stop) of a pool's window indices; a replica claims one by writing its id and a
lease expiry, renews the lease while it works and marks the chunk done (``done_by``: which replica).
``salt_schema`` goes to version 2, so a release from before migrations (which checks that row) refuses the
upgraded cache instead of using it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "salt_job_chunk",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("start", sa.Integer, nullable=False),
        sa.Column("stop", sa.Integer, nullable=False),
        sa.Column("done", sa.Boolean, nullable=False),
        sa.Column("done_by", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_expires", sa.Float, nullable=True),
    )
    op.execute("UPDATE salt_schema SET version = 2 WHERE id = 1")


def downgrade() -> None:
    op.drop_table("salt_job_chunk")
    op.execute("UPDATE salt_schema SET version = 1 WHERE id = 1")
