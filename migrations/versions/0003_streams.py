"""Streams: one row per aggregate with its current version, the optimistic-concurrency check.

The append locks each aggregate's row and compares its version with the expected one, so the
check sees the latest committed version (not a snapshot taken before the statement waited) and
a writer waiting for another transaction's aggregate waits on that row, before it takes the
global sequence. Room for a snapshot version and an erasure key id (later revisions fill them).
Existing events are backfilled: one row per aggregate at its highest version.

Revision ID: 0003_streams
Revises: 0002_projections
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from eventuali_pg.migration import migration_schema

revision: str = "0003_streams"
down_revision: str | None = "0002_projections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "streams",
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot_version", sa.Integer(), nullable=True),
        sa.Column("erasure_key_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("aggregate_id", name="streams_pkey"),
        sa.CheckConstraint("version >= 0", name="streams_version_not_negative"),
        schema=schema,
    )
    op.execute(
        f"INSERT INTO {schema}.streams (aggregate_id, aggregate_type, version) "
        f"SELECT DISTINCT ON (aggregate_id) aggregate_id, aggregate_type, aggregate_version "
        f"FROM {schema}.events ORDER BY aggregate_id, aggregate_version DESC"
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("streams", schema=schema)
