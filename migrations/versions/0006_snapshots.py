"""Snapshots: an aggregate's state at a version, so ``load`` replays only the events after it;
and the schema's compatibility declaration.

One snapshot row per aggregate (with the snapshot version: the shape of the state, declared by
the aggregate class); a snapshot of another snapshot version is ignored by loads and replaced by
the next one. ``schema_compatibility`` holds one row: the revision and the oldest library
revision that can still use the schema. Every later revision sets it, so an older release
keeps running against a newer schema that declares itself compatible (rolling deploys).

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
    op.create_table(
        "schema_compatibility",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.Text(), nullable=False),
        sa.Column("oldest_compatible", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="schema_compatibility_pkey"),
        sa.CheckConstraint("id = 1", name="schema_compatibility_single_row"),
        schema=schema,
    )
    op.execute(
        f"INSERT INTO {schema}.schema_compatibility (id, revision, oldest_compatible) "
        f"VALUES (1, '{revision}', '{revision}')"
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("schema_compatibility", schema=schema)
    op.drop_table("snapshots", schema=schema)
