"""Projection versions: several versions of one projection side by side, one of them active.

One row per subscription and version: ``replay_until`` is the head when that version was first
started (events up to it are a replay, which its handler can tell), ``active`` marks the
version the application serves. Usable by a 0006 library (it ignores the table), which the
compatibility row declares.

Revision ID: 0007_projection_versions
Revises: 0006_snapshots
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from eventuali_pg.migration import migration_schema

revision: str = "0007_projection_versions"
down_revision: str | None = "0006_snapshots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "projection_versions",
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("replay_until", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("subscription_id", "version", name="projection_versions_pkey"),
        sa.CheckConstraint("version >= 1", name="projection_versions_version_positive"),
        schema=schema,
    )
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '{revision}', "
        "oldest_compatible = '0006_snapshots' WHERE id = 1"
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("projection_versions", schema=schema)
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '0006_snapshots', "
        "oldest_compatible = '0006_snapshots' WHERE id = 1"
    )
