"""Consumer groups that resize while running: members and partition leases.

``group_members`` has one row per live member of an elastic consumer group (renewed every
heartbeat; a row past ``expires_at`` is a dead member). ``group_partitions`` has one row per
partition of the group: its owner and when the owner's lease runs out. Usable by a 0007
library (it ignores both tables), which the compatibility row declares.

Revision ID: 0009_group_members
Revises: 0008_subject_keys
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from eventuali_pg.migration import migration_schema

revision: str = "0009_group_members"
down_revision: str | None = "0008_subject_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "group_members",
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("member_id", sa.Text(), nullable=False),
        sa.Column("partitions", sa.Integer(), nullable=False),
        sa.Column(
            "joined_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "member_id", name="group_members_pkey"),
        sa.CheckConstraint("partitions >= 1", name="group_members_partitions_positive"),
        schema=schema,
    )
    op.create_table(
        "group_partitions",
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("partitions", sa.Integer(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("owned_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", "partition", name="group_partitions_pkey"),
        sa.CheckConstraint(
            "partition >= 0 AND partition < partitions", name="group_partitions_in_range"
        ),
        schema=schema,
    )
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '{revision}', "
        "oldest_compatible = '0007_projection_versions' WHERE id = 1"
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("group_partitions", schema=schema)
    op.drop_table("group_members", schema=schema)
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '0008_subject_keys', "
        "oldest_compatible = '0007_projection_versions' WHERE id = 1"
    )
