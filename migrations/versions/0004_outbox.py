"""Outbox: events saved inside an application's transaction take their positions at its commit.

``pending_events`` holds the events a transaction saved, invisible to readers. A deferred
constraint trigger fires at the transaction's commit, after the application's own work: it
advances the global sequence by the number of pending events of this transaction, moves them
into ``events`` with dense positions in the order they were saved, and notifies. PostgreSQL
makes a committing transaction visible before it releases its locks, so the next transaction to
take the sequence row proceeds only after this one is visible: positions stay dense and in
commit order, and the sequence row is held only from the trigger to the end of the commit.

Revision ID: 0004_outbox
Revises: 0003_streams
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventuali_pg.migration import migration_schema

revision: str = "0004_outbox"
down_revision: str | None = "0003_streams"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "event_id, aggregate_id, aggregate_type, aggregate_version, event_type, event_version, "
    "payload, causation_id, correlation_id, user_id, metadata, occurred_at"
)


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "pending_events",
        sa.Column("ord", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "txid",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id())::text::bigint"),
            nullable=False,
        ),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("aggregate_id", sa.Text(), nullable=False),
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("event_version", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("causation_id", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ord", name="pending_events_pkey"),
        schema=schema,
    )
    op.create_index(
        "pending_events_txid_idx", "pending_events", ["txid"], unique=False, schema=schema
    )
    op.execute(
        f"""
CREATE FUNCTION {schema}.assign_pending_positions() RETURNS trigger
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
    )
    op.execute(
        f"""
CREATE CONSTRAINT TRIGGER pending_events_assign_positions
AFTER INSERT ON {schema}.pending_events
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION {schema}.assign_pending_positions()
"""
    )


def downgrade() -> None:
    schema = migration_schema()
    op.execute(
        f"DROP TRIGGER IF EXISTS pending_events_assign_positions ON {schema}.pending_events"
    )
    op.execute(f"DROP FUNCTION IF EXISTS {schema}.assign_pending_positions()")
    op.drop_index("pending_events_txid_idx", table_name="pending_events", schema=schema)
    op.drop_table("pending_events", schema=schema)
