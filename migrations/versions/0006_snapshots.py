"""Snapshots: an aggregate's state at a version, so ``load`` replays only the events after it.

One row per aggregate and snapshot version (the shape of the state, declared by the aggregate
class); rows of another snapshot version are ignored by loads and replaced by the next
snapshot.

Revision ID: 0006_snapshots
Revises: 0005_append_only
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventuali_pg.migration import migration_schema

revision: str = "0006_snapshots"
down_revision: str | None = "0005_append_only"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "snapshots",
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("snapshot_version", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", postgresql.JSONB(), nullable=False),
        sa.Column(
            "taken_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("aggregate_id", name="snapshots_pkey"),
        sa.CheckConstraint("version > 0", name="snapshots_version_positive"),
        schema=schema,
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("snapshots", schema=schema)
