"""Every SQL statement the store runs, built once per schema name.

Schema names are validated identifiers (see :mod:`eventuali_pg._identifiers`); every value is a
bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .._identifiers import validate_identifier

#: PostgreSQL schema of the store's tables unless configured otherwise.
DEFAULT_SCHEMA = "eventuali"

EVENT_COLUMNS = (
    "global_position, event_id, aggregate_id, aggregate_type, aggregate_version, event_type, "
    "event_version, payload::text AS payload, causation_id, correlation_id, user_id, "
    "metadata::text AS metadata, occurred_at, recorded_at"
)


@dataclass(frozen=True)
class StoreSql:
    """The statements of one store schema."""

    schema: str
    channel: str

    @property
    def append(self) -> str:
        """Append the events of one or more save units (one per ``save``/``save_all`` call).

        ``$1..$5``: per aggregate, its unit, id, expected version, type and new version;
        ``$6..$18``: per event, its unit and one array per column; ``$19``: notification
        channel. Returns one row: the new head (NULL when nothing was written), the commit
        timestamp, the rejected units (an aggregate not at its expected version) and the busy
        units (an aggregate held by an open transaction: not written; to be saved again in a
        transaction that first waits for the locks with :attr:`lock_streams`), and ``grow_at``
        (NULL unless the events table is partitioned: a head at or above it asks for
        :attr:`extend_partitions` after the commit).

        Order of work, which the data dependencies between the parts enforce:

        1. try each aggregate's stream lock (a transaction-scoped advisory lock that an open
           transaction holds on the aggregates it saved); a unit with one that is taken is
           *busy* and left alone, so nothing here waits for an open transaction;
        2. lock the other aggregates' ``streams`` rows (sorted, so concurrent appends cannot
           deadlock) and reject every unit with an aggregate not at its expected version;
        3. move the accepted aggregates' rows (insert the new ones: two creations of one
           aggregate collide on ``streams_pkey``, the per-aggregate guard that needs no unique
           key on events, so it holds on a partitioned table too; a new row's
           ``first_position`` is the head this statement sees plus one, never above the
           position its first event gets);
        4. only then advance the sequence row and insert the events with dense positions in
           input order (on a partitioned table, record their ids in ``event_ids``, whose
           primary key refuses an id stored before), and notify.

        Run outside an explicit transaction, the statement is its own transaction: the sequence
        row is locked from its UPDATE until the commit that follows at once, so appenders commit
        in position order and the lock is held for one statement only.
        """
        return _append(self.schema, "try")

    @property
    def append_keyed(self) -> str:
        """:attr:`append` for units with personal fields: ``$20..$22`` give per unit the
        subjects and key generations it encrypted with (see :mod:`.keys`); an extra column
        ``forgotten`` lists the units left out because one of those keys is gone."""
        return _append(self.schema, "try", True)

    @property
    def stage_keyed(self) -> str:
        """:attr:`stage` with the key check of :attr:`append_keyed`."""
        return _append(self.schema, "stage", True)

    @property
    def lock_streams(self) -> str:
        """Wait for the stream lock of each aggregate id in ``$1`` (in that order: sort them),
        held until the transaction ends. Its own statement, so that the statement that follows
        takes its snapshot after the wait and sees what the previous holder committed."""
        return (
            f"SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended("
            f"'eventuali_pg:stream:{self.schema}:' || id, 0)) FROM unnest($1::text[]) AS id) l"
        )

    @property
    def stage(self) -> str:
        """Save units inside the caller's transaction: check and move the aggregates' versions
        (their stream locks are tried, as :attr:`append` does: held after
        :attr:`lock_streams`, a unit whose lock another transaction holds is busy), and insert
        the events into ``pending_events``, where the commit trigger gives them positions.
        Same parameters as :attr:`append`; returns the number staged, the rejected units and
        the busy units."""
        return _append(self.schema, "stage")

    @property
    def snapshot_save(self) -> str:
        """Keep the snapshot ``$1..$5`` (aggregate id, type, snapshot version, version, state)
        unless a newer one of the same snapshot version is already there, or the aggregate
        id is a forgotten subject (a state captured before ``forget`` committed; the share
        lock makes a concurrent forget wait, then delete it)."""
        s = self.schema
        return (
            f"INSERT INTO {s}.snapshots (aggregate_id, aggregate_type, snapshot_version, version,"
            " state) SELECT $1, $2, $3, $4, $5::jsonb WHERE (SELECT k.key IS NOT NULL FROM"
            f" {s}.subject_keys k WHERE k.subject_id = $1 FOR SHARE) IS NOT FALSE"
            " ON CONFLICT (aggregate_id) DO UPDATE SET"
            " aggregate_type = EXCLUDED.aggregate_type, snapshot_version ="
            " EXCLUDED.snapshot_version, version = EXCLUDED.version, state = EXCLUDED.state,"
            f" taken_at = now() WHERE {s}.snapshots.version < EXCLUDED.version"
            f" OR {s}.snapshots.snapshot_version <> EXCLUDED.snapshot_version"
        )

    @property
    def snapshot_load(self) -> str:
        """The snapshot of aggregate ``$1`` and the aggregate's current version."""
        s = self.schema
        return (
            f"SELECT sn.aggregate_type, sn.snapshot_version, sn.version, sn.state::text AS state,"
            f" st.version AS stream_version FROM {s}.snapshots sn"
            f" JOIN {s}.streams st USING (aggregate_id) WHERE sn.aggregate_id = $1"
        )

    @property
    def stored_events(self) -> str:
        """Aggregate, version, position and commit time of the stored events with ids ``$1``."""
        return _by_event_id(
            self.schema, "event_id, aggregate_id, aggregate_version, global_position, recorded_at"
        )

    @property
    def positions_of(self) -> str:
        """Global position and commit time of the events with ids ``$1``."""
        return _by_event_id(self.schema, "event_id, global_position, recorded_at")

    @property
    def extend_partitions(self) -> str:
        """Create the partitions needed ahead of head ``$1`` (nothing on an ordinary table); its
        own transaction, never in the statement that inserts (see :mod:`.partitioning`)."""
        return f"SELECT {self.schema}.extend_event_partitions($1::bigint)"

    @property
    def make_room(self) -> str:
        """Create partitions for ``$1`` more events beyond the current head."""
        return (
            f"SELECT {self.schema}.extend_event_partitions("
            f"(SELECT position FROM {self.schema}.global_sequence WHERE id = 1) + $1::bigint)"
        )

    @property
    def aggregate_versions(self) -> str:
        """Current version of each aggregate id in ``$1`` (absent ids are left out)."""
        return (
            f"SELECT aggregate_id, version FROM {self.schema}.streams "
            "WHERE aggregate_id = ANY($1::text[])"
        )

    @property
    def aggregate_version(self) -> str:
        """Current version of aggregate ``$1``, NULL when it has no events."""
        return f"SELECT version FROM {self.schema}.streams WHERE aggregate_id = $1"

    @property
    def aggregate_version_at(self) -> str:
        """Version of aggregate ``$1`` among events at or below global position ``$2``."""
        return (
            f"SELECT max(aggregate_version) FROM {self.schema}.events "
            f"WHERE aggregate_id = $1 AND global_position <= $2 AND {_from_first(self.schema)}"
        )

    @property
    def load_aggregate(self) -> str:
        """Events of aggregate ``$1`` with a version above ``$2``, oldest first.

        On a partitioned table, the aggregate's ``first_position`` (a lower bound of its first
        event's position, kept in its streams row) skips the partitions before it at run time.
        """
        return (
            f"SELECT {EVENT_COLUMNS} FROM {self.schema}.events "
            f"WHERE aggregate_id = $1 AND aggregate_version > $2 AND {_from_first(self.schema)} "
            "ORDER BY aggregate_version"
        )

    @property
    def analyze_streams(self) -> str:
        """Refresh the planner's statistics of ``streams`` (see :mod:`.statistics`)."""
        return f"ANALYZE {self.schema}.streams"

    #: The fraction of the server's NOTIFY queue in use (0 to 1).
    notification_queue_usage = "SELECT pg_notification_queue_usage()"

    @property
    def head(self) -> str:
        """The highest committed global position (0 when empty)."""
        return f"SELECT position FROM {self.schema}.global_sequence WHERE id = 1"

    def read_from_position(
        self, *, aggregate_types: bool, event_types: bool, upper_bound: bool, limit: bool
    ) -> str:
        """Events after ``$1`` in position order; each flag adds one filter parameter.

        Parameters follow ``$1`` in this order: aggregate types (text[]), event types (text[]),
        the inclusive upper bound, the limit. Separate statements per filter combination keep
        every plan able to use its index.
        """
        return _read_from_position(self.schema, aggregate_types, event_types, upper_bound, limit)


@cache
def _append(schema: str, mode: str, keyed: bool = False) -> str:
    statement = _append_plain(schema, mode)
    if not keyed:
        return statement
    # Units with personal fields: each (unit, subject, key generation) it encrypted with is in
    # $20..$22. Every key row must still hold that generation's key; a share lock keeps it so
    # until the commit (a forget waits for it), and a unit whose key is gone is left out.
    s = schema
    keys = f"""), needed AS (
    SELECT n.* FROM unnest($20::int[], $21::text[], $22::int[]) AS n(unit, subject_id, generation)
), keyed AS (
    SELECT k.subject_id, k.generation
    FROM (SELECT DISTINCT subject_id FROM needed) w
    JOIN {s}.subject_keys k ON k.subject_id = w.subject_id
    WHERE k.key IS NOT NULL
    ORDER BY k.subject_id
    FOR SHARE OF k
), unkeyed AS (
    SELECT DISTINCT n.unit FROM needed n LEFT JOIN keyed k USING (subject_id, generation)
    WHERE k.subject_id IS NULL
), locks AS ("""
    statement = statement.replace("\n), locks AS (", "\n" + keys, 1)
    statement = statement.replace(
        "SELECT unit FROM rejected UNION SELECT unit FROM busy",
        "SELECT unit FROM rejected UNION SELECT unit FROM busy UNION SELECT unit FROM unkeyed",
        1,
    )
    return statement.replace(
        "ARRAY(SELECT unit FROM busy ORDER BY unit) AS busy",
        "ARRAY(SELECT unit FROM busy ORDER BY unit) AS busy,\n"
        "       ARRAY(SELECT unit FROM unkeyed ORDER BY unit) AS forgotten",
        1,
    )


def _append_plain(schema: str, mode: str) -> str:
    s = schema
    lock_key = f"hashtextextended('eventuali_pg:stream:{s}:' || o.aggregate_id, 0)"
    ordered = "(SELECT unit, aggregate_id FROM expected ORDER BY aggregate_id) o"
    locks = f"SELECT o.unit, pg_try_advisory_xact_lock({lock_key}) AS got FROM {ordered}"
    # `locked` looks each aggregate up on its own (LATERAL): with `aggregate_id = ANY($2)` the
    # generic plan cached after five runs scanned the whole streams table for groups of many
    # saves until the table held ~10,000 rows, whatever its statistics said.
    head = f"""
WITH expected AS (
    SELECT e.*
    FROM unnest($1::int[], $2::text[], $3::int[], $4::text[], $5::int[])
         AS e(unit, aggregate_id, expected_version, aggregate_type, new_version)
), locks AS (
    {locks}
), busy AS (
    SELECT DISTINCT unit FROM locks WHERE NOT got
), locked AS (
    SELECT st.aggregate_id, st.version
    FROM (SELECT e.aggregate_id FROM expected e WHERE e.unit NOT IN (SELECT unit FROM busy)
          ORDER BY e.aggregate_id) o,
         LATERAL (SELECT r.aggregate_id, r.version FROM {s}.streams r
                  WHERE r.aggregate_id = o.aggregate_id FOR UPDATE) st
), rejected AS (
    SELECT DISTINCT e.unit FROM expected e LEFT JOIN locked l USING (aggregate_id)
    WHERE e.unit NOT IN (SELECT unit FROM busy)
      AND e.expected_version <> COALESCE(l.version, 0)
), skipped AS (
    SELECT unit FROM rejected UNION SELECT unit FROM busy
), moved AS (
    UPDATE {s}.streams st SET version = e.new_version
    FROM expected e
    WHERE st.aggregate_id = e.aggregate_id AND e.expected_version > 0
      AND e.unit NOT IN (SELECT unit FROM skipped)
    RETURNING 1
), created AS (
    INSERT INTO {s}.streams (aggregate_id, aggregate_type, version, first_position)
    SELECT e.aggregate_id, e.aggregate_type, e.new_version,
           (SELECT position + 1 FROM {s}.global_sequence WHERE id = 1)
    FROM expected e
    WHERE e.expected_version = 0 AND e.unit NOT IN (SELECT unit FROM skipped)
    ORDER BY e.aggregate_id
    RETURNING 1
), accepted AS (
    SELECT t.*, row_number() OVER (ORDER BY t.ord) AS rn
    FROM unnest($6::int[], $7::uuid[], $8::text[], $9::text[], $10::int[], $11::text[],
                $12::int[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                $18::timestamptz[])
         WITH ORDINALITY AS t(unit, event_id, aggregate_id, aggregate_type, aggregate_version,
                              event_type, event_version, payload, causation_id, correlation_id,
                              user_id, metadata, occurred_at, ord)
    WHERE t.unit NOT IN (SELECT unit FROM skipped)
), streams_moved AS (
    SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM created) AS k
)"""
    if mode == "stage":
        return (
            head
            + f""", staged AS (
    INSERT INTO {s}.pending_events (
        channel, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,
        event_version, payload, causation_id, correlation_id, user_id, metadata, occurred_at)
    SELECT $19, a.event_id, a.aggregate_id, a.aggregate_type, a.aggregate_version,
           a.event_type, a.event_version, a.payload::jsonb, a.causation_id, a.correlation_id,
           a.user_id, a.metadata::jsonb, a.occurred_at
    FROM accepted a, streams_moved
    WHERE streams_moved.k >= 0
    ORDER BY a.rn
    RETURNING 1
)
SELECT (SELECT count(*) FROM staged) AS staged,
       ARRAY(SELECT unit FROM rejected ORDER BY unit) AS rejected,
       ARRAY(SELECT unit FROM busy ORDER BY unit) AS busy
"""
        )
    return (
        head
        + f""", total AS (
    SELECT count(*)::bigint AS n FROM accepted
), seq AS (
    UPDATE {s}.global_sequence SET position = position + total.n
    FROM total, streams_moved WHERE id = 1 AND total.n > 0 AND streams_moved.k >= 0
    RETURNING position, total.n
), inserted AS (
    INSERT INTO {s}.events (
        global_position, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,
        event_version, payload, causation_id, correlation_id, user_id, metadata, occurred_at)
    SELECT seq.position - seq.n + a.rn, a.event_id, a.aggregate_id, a.aggregate_type,
           a.aggregate_version, a.event_type, a.event_version, a.payload::jsonb, a.causation_id,
           a.correlation_id, a.user_id, a.metadata::jsonb, a.occurred_at
    FROM seq, accepted a
    RETURNING 1
), recorded AS (
    INSERT INTO {s}.event_ids (event_id, global_position)
    SELECT a.event_id, seq.position - seq.n + a.rn FROM seq, accepted a
    WHERE EXISTS (SELECT FROM {s}.event_partitioning WHERE id = 1)
    RETURNING 1
)
SELECT (SELECT position FROM seq) AS head, now() AS recorded_at,
       ARRAY(SELECT unit FROM rejected ORDER BY unit) AS rejected,
       ARRAY(SELECT unit FROM busy ORDER BY unit) AS busy,
       (SELECT pg_notify($19, position::text) FROM seq) AS notified,
       (SELECT upper_bound - partitions_ahead * partition_size FROM {s}.event_partitioning
        WHERE id = 1) AS grow_at
"""
    )


def _from_first(schema: str) -> str:
    # NULL for aggregates created by a release before 0010: no partition is skipped for them.
    return (
        f"global_position >= COALESCE((SELECT first_position FROM {schema}.streams "
        "WHERE aggregate_id = $1), 0)"
    )


def _by_event_id(schema: str, columns: str) -> str:
    # An ordinary table finds ids with its unique index; a partitioned one (whose ONLY part is
    # empty) through event_ids, one partition per id (empty in an ordinary store).
    joined = ", ".join(f"e.{column.strip()}" for column in columns.split(","))
    return (
        f"SELECT {columns} FROM ONLY {schema}.events WHERE event_id = ANY($1::uuid[]) "
        f"UNION ALL SELECT {joined} FROM {schema}.event_ids i "
        f"JOIN {schema}.events e ON e.global_position = i.global_position "
        "WHERE i.event_id = ANY($1::uuid[])"
    )


@cache
def _read_from_position(
    schema: str, aggregate_types: bool, event_types: bool, upper_bound: bool, limit: bool
) -> str:
    conditions = ["global_position > $1"]
    index = 2
    if aggregate_types:
        conditions.append(f"aggregate_type = ANY(${index}::text[])")
        index += 1
    if event_types:
        conditions.append(f"event_type = ANY(${index}::text[])")
        index += 1
    if upper_bound:
        conditions.append(f"global_position <= ${index}")
        index += 1
    limit_clause = f" LIMIT ${index}" if limit else ""
    return (
        f"SELECT {EVENT_COLUMNS} FROM {schema}.events WHERE {' AND '.join(conditions)} "
        f"ORDER BY global_position{limit_clause}"
    )


@cache
def store_sql(schema: str, channel: str) -> StoreSql:
    """The statements for ``schema``, notifying on ``channel`` (both validated)."""
    validate_identifier(schema, what="schema name")
    validate_identifier(channel, what="notification channel")
    return StoreSql(schema=schema, channel=channel)
