"""The SQL of a partitioned events table (range partitions by ``global_position``).

A store is partitioned when its ``event_partitioning`` table holds its one row (partition size,
partitions kept ahead, upper bound of the last partition). Migration ``0010_partitioned_events``
creates the functions below in every store; :func:`conversion_sql` turns a store's ordinary
events table into a partitioned one (a fresh store at migration time, or an existing one: its
table becomes the first partition, nothing is rewritten).

Two keys are impossible on a partitioned table, because a unique key there must contain the
partition key:

* ``(aggregate_id, aggregate_version)``: the ``streams`` row of each aggregate is the guard (its
  version is checked and moved under its row lock; two creations of one aggregate collide on
  ``streams_pkey``), as it already is on an ordinary table, where the unique key stays as a
  backstop;
* ``event_id``: the append statement and the outbox's commit trigger also record every event
  id in ``event_ids`` (primary key ``event_id``) when the table is partitioned; a reused id
  fails there. (Not a statement trigger with a transition table on ``events``: that copies
  every inserted row once more and cost about a fifth of the append throughput.)

Partitions are created ahead of need, never by the statement that needs them: PostgreSQL cannot
attach a partition to a table that the running statement is inserting into, and a row with no
partition fails. :func:`extend_function_sql` keeps ``partitions_ahead`` partitions beyond the
head. It is serialised by the row lock on ``event_partitioning`` (``SELECT ... FOR UPDATE`` reads
the latest committed bound once it holds the lock, so a second caller in another process finds
the work done), and it creates each partition as a standalone table attached with ``ATTACH
PARTITION``, which takes only a SHARE UPDATE EXCLUSIVE lock on ``events``: readers and writers
go on. It runs as the tables' owner (SECURITY DEFINER), so an application role with only DML
privileges can trigger it.
"""

from __future__ import annotations

from .._identifiers import validate_identifier

#: Partitions kept ready beyond the one holding the head.
PARTITIONS_AHEAD = 2

#: Smallest partition size accepted.
MIN_PARTITION_SIZE = 10

#: Name of the partition holding the rows an existing store had when it was converted (or the
#: first partition of a store partitioned from the start).
FIRST_PARTITION = "events_p0"


def check_partition_size(size: object) -> int:
    """``size`` as a partition size, or a ValueError saying what is accepted."""
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size.strip())
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_PARTITION_SIZE:
        raise ValueError(
            f"partition size must be a whole number of events >= {MIN_PARTITION_SIZE}, got "
            f"{size!r}"
        )
    return size


def extend_function_sql(schema: str) -> str:
    """``<schema>.extend_event_partitions(head)``: create partitions until more than
    ``partitions_ahead + 1`` partitions' worth of positions lie beyond ``head``; returns the new
    upper bound (NULL when the store is not partitioned). Appends call it once the room left
    is ``partitions_ahead`` partitions or less, so there is always that much room for the
    appends in flight (a statement sees the partitions that existed when it started)."""
    s = validate_identifier(schema, what="schema name")
    return f"""
CREATE OR REPLACE FUNCTION {s}.extend_event_partitions(head bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $function$
DECLARE
    size bigint;
    ahead integer;
    bound bigint;
    first_bound bigint;
    part text;
BEGIN
    -- The row lock serialises creators: a second caller waits here, then reads the bound the
    -- first one committed.
    SELECT p.partition_size, p.partitions_ahead, p.upper_bound INTO size, ahead, bound
    FROM {s}.event_partitioning p WHERE p.id = 1 FOR UPDATE;
    IF size IS NULL THEN
        RETURN NULL;
    END IF;
    first_bound := bound;
    WHILE bound <= head + (ahead + 1) * size LOOP
        part := 'events_p' || ((bound - 1) / size);
        -- A standalone table attached afterwards: ATTACH PARTITION takes a SHARE UPDATE
        -- EXCLUSIVE lock on events, where CREATE TABLE ... PARTITION OF would take ACCESS
        -- EXCLUSIVE and wait for (and block) every reader.
        EXECUTE 'CREATE TABLE {s}.' || quote_ident(part)
            || ' (LIKE {s}.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)';
        EXECUTE 'ALTER TABLE {s}.events ATTACH PARTITION {s}.' || quote_ident(part)
            || ' FOR VALUES FROM (' || bound || ') TO (' || (bound + size) || ')';
        -- Row triggers of events reach every partition; TRUNCATE triggers do not.
        EXECUTE 'CREATE TRIGGER ' || quote_ident(part || '_no_truncate')
            || ' BEFORE TRUNCATE ON {s}.' || quote_ident(part)
            || ' FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_history_rewrite()';
        bound := bound + size;
    END LOOP;
    IF bound <> first_bound THEN
        UPDATE {s}.event_partitioning SET upper_bound = bound WHERE id = 1;
    END IF;
    RETURN bound;
END
$function$
"""


def assign_positions_function_sql(schema: str, columns: str) -> str:
    """The outbox's commit trigger (migration 0004), which also keeps partitions ahead: when
    the room left beyond the head it reaches is ``partitions_ahead`` partitions or less, it
    extends them before inserting (in a statement of its own, which starts after the extension
    and so sees the new partitions)."""
    s = validate_identifier(schema, what="schema name")
    return f"""
CREATE OR REPLACE FUNCTION {s}.assign_pending_positions() RETURNS trigger
LANGUAGE plpgsql AS $function$
DECLARE
    tx bigint := pg_current_xact_id()::text::bigint;
    n bigint;
    head bigint;
    grow_at bigint;
    notify_channel text;
BEGIN
    SELECT count(*), min(p.channel) INTO n, notify_channel
    FROM {s}.pending_events p WHERE p.txid = tx;
    IF n = 0 THEN
        RETURN NULL;  -- already assigned by this commit's first trigger call
    END IF;
    UPDATE {s}.global_sequence SET position = position + n WHERE id = 1
    RETURNING position INTO head;
    SELECT p.upper_bound - p.partitions_ahead * p.partition_size INTO grow_at
    FROM {s}.event_partitioning p WHERE p.id = 1;
    IF grow_at IS NOT NULL AND head >= grow_at THEN
        PERFORM {s}.extend_event_partitions(head);
    END IF;
    INSERT INTO {s}.events (global_position, {columns}, recorded_at)
    SELECT head - n + row_number() OVER (ORDER BY p.ord), {columns}, clock_timestamp()
    FROM {s}.pending_events p WHERE p.txid = tx ORDER BY p.ord;
    IF grow_at IS NOT NULL THEN
        INSERT INTO {s}.event_ids (event_id, global_position)
        SELECT e.event_id, e.global_position FROM {s}.events e
        WHERE e.global_position > head - n AND e.global_position <= head;
    END IF;
    DELETE FROM {s}.pending_events WHERE txid = tx;
    PERFORM pg_notify(notify_channel, head::text);
    RETURN NULL;
END
$function$
"""


def conversion_sql(schema: str, partition_size: int) -> str:
    """One ``DO`` block turning the store's ordinary events table into a partitioned one.

    It locks ``events`` and then ``global_sequence`` (appends wait until it commits), renames
    the table to ``events_p0`` and attaches it as the first partition, covering positions up
    to the end of the partition holding the head (PostgreSQL checks that range with one
    sequential scan; nothing is rewritten). The unique keys on ``event_id`` and
    ``(aggregate_id, aggregate_version)`` are dropped from it (``event_ids`` and ``streams`` take
    over; ids stored so far are copied into ``event_ids``) and a plain index on
    ``(aggregate_id, aggregate_version)`` is built on its rows. Then the partitions ahead are
    created. A store already partitioned with this size is left as it is; another size is
    refused.
    """
    s = validate_identifier(schema, what="schema name")
    size = check_partition_size(partition_size)
    refuse = f"{s}.refuse_history_rewrite()"
    return f"""
DO $convert$
DECLARE
    size constant bigint := {size};
    existing bigint;
    head bigint;
    bound bigint;
BEGIN
    SELECT p.partition_size INTO existing FROM {s}.event_partitioning p WHERE p.id = 1;
    IF existing = size THEN
        RETURN;
    ELSIF existing IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = 'the events table of schema {s} is already '
            || 'partitioned by ' || existing || ' events; the partition size cannot change';
    END IF;
    LOCK TABLE {s}.events, {s}.global_sequence IN ACCESS EXCLUSIVE MODE;
    SELECT position INTO head FROM {s}.global_sequence WHERE id = 1;
    bound := (head / size + 1) * size + 1;

    ALTER TABLE {s}.events RENAME TO {FIRST_PARTITION};
    ALTER TABLE {s}.{FIRST_PARTITION} RENAME CONSTRAINT events_pkey TO {FIRST_PARTITION}_pkey;
    ALTER INDEX {s}.events_aggregate_type_position_idx
        RENAME TO {FIRST_PARTITION}_aggregate_type_position_idx;
    ALTER INDEX {s}.events_event_type_position_idx
        RENAME TO {FIRST_PARTITION}_event_type_position_idx;
    ALTER TABLE {s}.{FIRST_PARTITION} DROP CONSTRAINT events_event_id_key;
    ALTER TABLE {s}.{FIRST_PARTITION} DROP CONSTRAINT events_aggregate_version_key;
    DROP TRIGGER events_append_only ON {s}.{FIRST_PARTITION};
    DROP TRIGGER events_no_truncate ON {s}.{FIRST_PARTITION};

    CREATE TABLE {s}.events (LIKE {s}.{FIRST_PARTITION} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
        PARTITION BY RANGE (global_position);
    ALTER TABLE {s}.events ADD CONSTRAINT events_pkey PRIMARY KEY (global_position);
    CREATE INDEX events_aggregate_type_position_idx
        ON {s}.events (aggregate_type, global_position);
    CREATE INDEX events_event_type_position_idx ON {s}.events (event_type, global_position);
    CREATE INDEX events_aggregate_version_idx ON {s}.events (aggregate_id, aggregate_version);
    EXECUTE 'ALTER TABLE {s}.events ATTACH PARTITION {s}.{FIRST_PARTITION} '
        || 'FOR VALUES FROM (1) TO (' || bound || ')';

    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events
        FOR EACH ROW EXECUTE FUNCTION {refuse};
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events
        FOR EACH STATEMENT EXECUTE FUNCTION {refuse};
    CREATE TRIGGER {FIRST_PARTITION}_no_truncate BEFORE TRUNCATE ON {s}.{FIRST_PARTITION}
        FOR EACH STATEMENT EXECUTE FUNCTION {refuse};

    INSERT INTO {s}.event_ids (event_id, global_position)
    SELECT event_id, global_position FROM {s}.{FIRST_PARTITION};

    INSERT INTO {s}.event_partitioning (id, partition_size, partitions_ahead, upper_bound)
    VALUES (1, size, {PARTITIONS_AHEAD}, bound);
    PERFORM {s}.extend_event_partitions(head);
END
$convert$
"""


def reversion_sql(schema: str) -> str:
    """One ``DO`` block turning a partitioned events table back into an ordinary one (copying
    every row once; for downgrades). Does nothing on an ordinary table."""
    s = validate_identifier(schema, what="schema name")
    refuse = f"{s}.refuse_history_rewrite()"
    return f"""
DO $revert$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {s}.event_partitioning) THEN
        RETURN;
    END IF;
    LOCK TABLE {s}.events, {s}.global_sequence IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE {s}.events RENAME TO events_partitioned;
    ALTER TABLE {s}.events_partitioned RENAME CONSTRAINT events_pkey TO events_partitioned_pkey;
    ALTER INDEX {s}.events_aggregate_type_position_idx
        RENAME TO events_partitioned_aggregate_type_position_idx;
    ALTER INDEX {s}.events_event_type_position_idx
        RENAME TO events_partitioned_event_type_position_idx;
    CREATE TABLE {s}.events (LIKE {s}.events_partitioned INCLUDING DEFAULTS
                             INCLUDING CONSTRAINTS);
    INSERT INTO {s}.events SELECT * FROM {s}.events_partitioned ORDER BY global_position;
    ALTER TABLE {s}.events ADD CONSTRAINT events_pkey PRIMARY KEY (global_position);
    ALTER TABLE {s}.events ADD CONSTRAINT events_event_id_key UNIQUE (event_id);
    ALTER TABLE {s}.events ADD CONSTRAINT events_aggregate_version_key
        UNIQUE (aggregate_id, aggregate_version);
    CREATE INDEX events_aggregate_type_position_idx
        ON {s}.events (aggregate_type, global_position);
    CREATE INDEX events_event_type_position_idx ON {s}.events (event_type, global_position);
    DROP TABLE {s}.events_partitioned;
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events
        FOR EACH ROW EXECUTE FUNCTION {refuse};
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events
        FOR EACH STATEMENT EXECUTE FUNCTION {refuse};
    SET LOCAL eventuali_pg.maintenance = 'on';
    DELETE FROM {s}.event_ids;
    DELETE FROM {s}.event_partitioning;
END
$revert$
"""
