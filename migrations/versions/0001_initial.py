"""Initial event store schema: events, the global sequence row, checkpoints.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventuali_pg.migration import migration_schema

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("eventuali_pg",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    op.create_table(
        "events",
        sa.Column("global_position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("event_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("causation_id", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column(
            "metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("global_position", name="events_pkey"),
        sa.UniqueConstraint("event_id", name="events_event_id_key"),
        sa.UniqueConstraint(
            "aggregate_id", "aggregate_version", name="events_aggregate_version_key"
        ),
        sa.CheckConstraint("global_position > 0", name="events_global_position_positive"),
        sa.CheckConstraint("aggregate_version > 0", name="events_aggregate_version_positive"),
        sa.CheckConstraint("aggregate_id <> ''", name="events_aggregate_id_not_empty"),
        schema=schema,
    )
    op.create_index(
        "events_aggregate_type_position_idx",
        "events",
        ["aggregate_type", "global_position"],
        schema=schema,
    )
    op.create_index(
        "events_event_type_position_idx", "events", ["event_type", "global_position"], schema=schema
    )
    op.create_table(
        "global_sequence",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="global_sequence_pkey"),
        sa.CheckConstraint("id = 1", name="global_sequence_single_row"),
        sa.CheckConstraint("position >= 0", name="global_sequence_position_not_negative"),
        schema=schema,
    )
    op.execute(f"INSERT INTO {schema}.global_sequence (id, position) VALUES (1, 0)")
    op.create_table(
        "checkpoints",
        sa.Column("subscription_id", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("subscription_id", name="checkpoints_pkey"),
        sa.CheckConstraint("position >= 0", name="checkpoints_position_not_negative"),
        schema=schema,
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("checkpoints", schema=schema)
    op.drop_table("global_sequence", schema=schema)
    op.drop_index("events_event_type_position_idx", table_name="events", schema=schema)
    op.drop_index("events_aggregate_type_position_idx", table_name="events", schema=schema)
    op.drop_table("events", schema=schema)
