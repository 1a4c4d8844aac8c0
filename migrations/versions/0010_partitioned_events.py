"""Partitioned events table, opt-in: range partitions by global_position.

Every store gets ``streams.first_position`` (at most the position of an aggregate's first
event, set when the aggregate is created: reads of its events skip earlier partitions),
``event_partitioning`` (one row once the store is partitioned: partition size,
partitions kept ahead, end of the last partition), ``event_ids`` (every event id of a
partitioned store, whose primary key keeps ids unique across partitions), the function that
creates partitions ahead of need, and an outbox commit trigger that calls it. The events table
itself becomes partitioned only when a partition size is given: ``migrate(partition_size=N)``,
``eventuali-pg migrate --partition-size N`` or ``alembic -x partition_size=N upgrade head``;
an existing store is converted in place (see :mod:`eventuali_pg.store.partitioning`).

A library at 0007 would append to a partitioned store without keeping partitions ahead, so
the schema declares this revision as the oldest compatible one.

Revision ID: 0010_partitioned_events
Revises: 0009_group_members
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventuali_pg.migration import migration_partition_size, migration_schema
from eventuali_pg.store.partitioning import (
    assign_positions_function_sql,
    conversion_sql,
    extend_function_sql,
    reversion_sql,
)

revision: str = "0010_partitioned_events"
down_revision: str | None = "0009_group_members"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The outbox's columns, as in 0004_outbox.
COLUMNS = (
    "event_id, aggregate_id, aggregate_type, aggregate_version, event_type, event_version, "
    "payload, causation_id, correlation_id, user_id, metadata, occurred_at"
)


def upgrade() -> None:
    schema = migration_schema()
    op.add_column("streams", sa.Column("first_position", sa.BigInteger(), nullable=True),
                  schema=schema)
    op.create_table(
        "event_partitioning",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("partition_size", sa.BigInteger(), nullable=False),
        sa.Column("partitions_ahead", sa.Integer(), nullable=False),
        sa.Column("upper_bound", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="event_partitioning_pkey"),
        sa.CheckConstraint("id = 1", name="event_partitioning_single_row"),
        sa.CheckConstraint("partition_size > 0", name="event_partitioning_size_positive"),
        sa.CheckConstraint("partitions_ahead > 0", name="event_partitioning_ahead_positive"),
        schema=schema,
    )
    op.create_table(
        "event_ids",
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("global_position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="event_ids_pkey"),
        schema=schema,
    )
    op.execute(
        f"CREATE TRIGGER event_ids_append_only BEFORE UPDATE OR DELETE ON {schema}.event_ids "
        f"FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_history_rewrite()"
    )
    op.execute(
        f"CREATE TRIGGER event_ids_no_truncate BEFORE TRUNCATE ON {schema}.event_ids "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_history_rewrite()"
    )
    op.execute(extend_function_sql(schema))
    op.execute(assign_positions_function_sql(schema, COLUMNS))
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '{revision}', "
        f"oldest_compatible = '{revision}' WHERE id = 1"
    )
    size = migration_partition_size()
    if size is not None:
        op.execute(conversion_sql(schema, size))


def downgrade() -> None:
    schema = migration_schema()
    op.execute(reversion_sql(schema))
    op.execute(_assign_positions_0004(schema))
    op.execute(f"DROP FUNCTION IF EXISTS {schema}.extend_event_partitions(bigint)")
    op.drop_table("event_ids", schema=schema)
    op.drop_table("event_partitioning", schema=schema)
    op.drop_column("streams", "first_position", schema=schema)
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '0009_group_members', "
        "oldest_compatible = '0007_projection_versions' WHERE id = 1"
    )


def _assign_positions_0004(schema: str) -> str:
    # The commit trigger as 0004_outbox created it (no partitions to keep ahead).
    return f"""
CREATE OR REPLACE FUNCTION {schema}.assign_pending_positions() RETURNS trigger
LANGUAGE plpgsql AS $function$
DECLARE
    tx bigint := pg_current_xact_id()::text::bigint;
    n bigint;
    head bigint;
    notify_channel text;
BEGIN
    SELECT count(*), min(p.channel) INTO n, notify_channel
    FROM {schema}.pending_events p WHERE p.txid = tx;
    IF n = 0 THEN
        RETURN NULL;  -- already assigned by this commit's first trigger call
    END IF;
    UPDATE {schema}.global_sequence SET position = position + n WHERE id = 1
    RETURNING position INTO head;
    INSERT INTO {schema}.events (global_position, {COLUMNS}, recorded_at)
    SELECT head - n + row_number() OVER (ORDER BY p.ord), {COLUMNS}, clock_timestamp()
    FROM {schema}.pending_events p WHERE p.txid = tx ORDER BY p.ord;
    DELETE FROM {schema}.pending_events WHERE txid = tx;
    PERFORM pg_notify(notify_channel, head::text);
    RETURN NULL;
END
$function$
"""
