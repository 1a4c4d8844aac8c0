"""The one declaration of the event store schema, as SQLAlchemy Core metadata.

Alembic migrations in ``migrations/`` create exactly this; a test compares the two. Runtime SQL
never goes through SQLAlchemy: it lives in :mod:`eventuali_pg.store.sql` and runs on asyncpg.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from .._identifiers import validate_identifier
from .revision import BRANCH_LABEL, COMPATIBILITY_TABLE, SCHEMA_REVISION, VERSION_TABLE
from .sql import DEFAULT_SCHEMA

__all__ = [
    "BRANCH_LABEL",
    "COMPATIBILITY_TABLE",
    "DEFAULT_SCHEMA",
    "SCHEMA_REVISION",
    "VERSION_TABLE",
    "build_metadata",
    "table_names",
]



def build_metadata(schema: str = DEFAULT_SCHEMA) -> MetaData:
    """Return the metadata of every table of the store, placed in PostgreSQL schema ``schema``."""
    validate_identifier(schema, what="schema name")
    metadata = MetaData(schema=schema)

    Table(
        "events",
        metadata,
        Column("global_position", BigInteger, nullable=False, autoincrement=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_type", Text, nullable=False),
        Column("aggregate_version", Integer, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("event_version", Integer, nullable=False, server_default=text("1")),
        Column("payload", JSONB, nullable=False),
        Column("causation_id", Text, nullable=True),
        Column("correlation_id", Text, nullable=True),
        Column("user_id", Text, nullable=True),
        Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("global_position", name="events_pkey"),
        UniqueConstraint("event_id", name="events_event_id_key"),
        UniqueConstraint("aggregate_id", "aggregate_version", name="events_aggregate_version_key"),
        CheckConstraint("global_position > 0", name="events_global_position_positive"),
        CheckConstraint("aggregate_version > 0", name="events_aggregate_version_positive"),
        CheckConstraint("aggregate_id <> ''", name="events_aggregate_id_not_empty"),
    )
    Index(
        "events_aggregate_type_position_idx",
        metadata.tables[f"{schema}.events"].c.aggregate_type,
        metadata.tables[f"{schema}.events"].c.global_position,
    )
    Index(
        "events_event_type_position_idx",
        metadata.tables[f"{schema}.events"].c.event_type,
        metadata.tables[f"{schema}.events"].c.global_position,
    )

    # One row, advanced inside every append transaction. Its row lock orders appenders from the
    # moment they take it until they commit, which is what makes positions commit-ordered.
    Table(
        "global_sequence",
        metadata,
        Column("id", SmallInteger, nullable=False, autoincrement=False),
        Column("position", BigInteger, nullable=False, server_default=text("0")),
        PrimaryKeyConstraint("id", name="global_sequence_pkey"),
        CheckConstraint("id = 1", name="global_sequence_single_row"),
        CheckConstraint("position >= 0", name="global_sequence_position_not_negative"),
    )

    # One row per aggregate: its current version, checked and moved by every append (the
    # optimistic-concurrency check), with room for a snapshot version and an erasure key id.
    Table(
        "streams",
        metadata,
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_type", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("snapshot_version", Integer, nullable=True),
        Column("erasure_key_id", Text, nullable=True),
        # At most the position of the aggregate's first event (0010; NULL before): reads of
        # its events skip the partitions before it.
        Column("first_position", BigInteger, nullable=True),
        PrimaryKeyConstraint("aggregate_id", name="streams_pkey"),
        CheckConstraint("version >= 0", name="streams_version_not_negative"),
    )

    # One row once the events table is partitioned by global_position (migration 0010): the
    # partition size, how many partitions are kept ahead, and where the last one ends.
    Table(
        "event_partitioning",
        metadata,
        Column("id", SmallInteger, nullable=False, autoincrement=False),
        Column("partition_size", BigInteger, nullable=False),
        Column("partitions_ahead", Integer, nullable=False),
        Column("upper_bound", BigInteger, nullable=False),
        PrimaryKeyConstraint("id", name="event_partitioning_pkey"),
        CheckConstraint("id = 1", name="event_partitioning_single_row"),
        CheckConstraint("partition_size > 0", name="event_partitioning_size_positive"),
        CheckConstraint("partitions_ahead > 0", name="event_partitioning_ahead_positive"),
    )

    # Every event id of a partitioned store (a unique key on a partitioned table must include
    # the partition key, so event ids are kept unique here); empty in an ordinary store.
    Table(
        "event_ids",
        metadata,
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("global_position", BigInteger, nullable=False, autoincrement=False),
        PrimaryKeyConstraint("event_id", name="event_ids_pkey"),
    )

    # Events saved inside an application's transaction, until its commit: a deferred constraint
    # trigger (migration 0004_outbox) then moves them into events with their positions.
    Table(
        "pending_events",
        metadata,
        Column("ord", BigInteger, Identity(always=True), nullable=False),
        Column(
            "txid",
            BigInteger,
            nullable=False,
            server_default=text("(pg_current_xact_id())::text::bigint"),
        ),
        Column("channel", Text, nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_type", Text, nullable=False),
        Column("aggregate_version", Integer, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("event_version", Integer, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("causation_id", Text, nullable=True),
        Column("correlation_id", Text, nullable=True),
        Column("user_id", Text, nullable=True),
        Column("metadata", JSONB, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("ord", name="pending_events_pkey"),
    )
    Index(
        "pending_events_txid_idx", metadata.tables[f"{schema}.pending_events"].c.txid
    )

    # The latest snapshot of an aggregate's state (one per aggregate; its snapshot_version is
    # the shape of the state, declared by the aggregate class).
    Table(
        "snapshots",
        metadata,
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_type", Text, nullable=False),
        Column("snapshot_version", Integer, nullable=False),
        Column("version", Integer, nullable=False),
        Column("state", JSONB, nullable=False),
        Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("aggregate_id", name="snapshots_pkey"),
        CheckConstraint("version > 0", name="snapshots_version_positive"),
    )

    # One row: the oldest library schema revision that can still use this schema (each
    # migration sets it; an older library accepts a newer schema that declares it compatible).
    Table(
        COMPATIBILITY_TABLE,
        metadata,
        Column("id", SmallInteger, nullable=False, autoincrement=False),
        Column("revision", Text, nullable=False),
        Column("oldest_compatible", Text, nullable=False),
        PrimaryKeyConstraint("id", name="schema_compatibility_pkey"),
        CheckConstraint("id = 1", name="schema_compatibility_single_row"),
    )

    # Versions of a projection side by side (eventuali_pg.projections.versions).
    Table(
        "projection_versions",
        metadata,
        Column("subscription_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("replay_until", BigInteger, nullable=False),
        Column("active", Boolean, nullable=False, server_default=text("false")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("subscription_id", "version", name="projection_versions_pkey"),
        CheckConstraint("version >= 1", name="projection_versions_version_positive"),
    )

    # One key per data subject (eventuali_pg.store.keys); a forgotten subject keeps its row
    # as a tombstone: key NULL, forgotten_at set.
    Table(
        "subject_keys",
        metadata,
        Column("subject_id", Text, nullable=False),
        Column("generation", Integer, nullable=False, server_default=text("1")),
        Column("key", LargeBinary, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("forgotten_at", DateTime(timezone=True), nullable=True),
        PrimaryKeyConstraint("subject_id", name="subject_keys_pkey"),
        CheckConstraint(
            "(key IS NULL) = (forgotten_at IS NOT NULL)", name="subject_keys_key_or_tombstone"
        ),
        CheckConstraint("key IS NULL OR octet_length(key) = 32", name="subject_keys_key_length"),
        CheckConstraint("generation >= 1", name="subject_keys_generation_positive"),
    )
    # Elastic consumer groups (eventuali_pg.projections.membership): live members, renewed
    # every heartbeat, and one lease row per partition naming its owner.
    Table(
        "group_members",
        metadata,
        Column("subscription_id", Text, nullable=False),
        Column("member_id", Text, nullable=False),
        Column("partitions", Integer, nullable=False),
        Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column(
            "heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()
        ),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("subscription_id", "member_id", name="group_members_pkey"),
        CheckConstraint("partitions >= 1", name="group_members_partitions_positive"),
    )
    Table(
        "group_partitions",
        metadata,
        Column("subscription_id", Text, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("partitions", Integer, nullable=False),
        Column("owner", Text, nullable=True),
        Column("owned_since", DateTime(timezone=True), nullable=True),
        Column("lease_expires_at", DateTime(timezone=True), nullable=True),
        PrimaryKeyConstraint("subscription_id", "partition", name="group_partitions_pkey"),
        CheckConstraint(
            "partition >= 0 AND partition < partitions", name="group_partitions_in_range"
        ),
    )

    Table(
        "checkpoints",
        metadata,
        Column("subscription_id", Text, nullable=False),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("subscription_id", name="checkpoints_pkey"),
        CheckConstraint("position >= 0", name="checkpoints_position_not_negative"),
    )

    # Events a projection gave up on after its retries (eventuali_pg.projections): one row per
    # subscription and event, until it is retried successfully or discarded.
    Table(
        "dead_letters",
        metadata,
        Column("subscription_id", Text, nullable=False),
        Column("global_position", BigInteger, nullable=False, autoincrement=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("aggregate_id", Text, nullable=False),
        Column("aggregate_type", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("event", JSONB, nullable=False),
        Column("error", Text, nullable=False),
        Column("traceback", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column(
            "last_failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()
        ),
        PrimaryKeyConstraint("subscription_id", "global_position", name="dead_letters_pkey"),
        CheckConstraint("attempts >= 0", name="dead_letters_attempts_not_negative"),
    )
    return metadata


def table_names(schema: str = DEFAULT_SCHEMA) -> list[str]:
    """Qualified names of the store's tables, in dependency order."""
    return [table.fullname for table in build_metadata(schema).sorted_tables]
