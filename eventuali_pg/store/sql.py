"""Every SQL statement the store runs, built once per schema name.

Schema names are validated identifiers (see :mod:`eventuali_pg._identifiers`); every value is a
bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .._identifiers import validate_identifier

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
        """Append a batch of events to one or more aggregates, as one statement.

        ``$1``/``$2``: aggregate ids and the version each is expected to be at; ``$3``: number of
        events; ``$4..$15``: one array per column; ``$16``: notification channel. Returns the new
        head position and the commit timestamp, or no row when an expected version does not
        match (then nothing is written).

        Run outside an explicit transaction, the statement is its own transaction: the sequence
        row is locked from the UPDATE until the commit that follows at once, so appenders commit
        in position order and the lock is held for one statement only.
        """
        s = self.schema
        return f"""
WITH expected AS (
    SELECT e.aggregate_id, e.expected_version
    FROM unnest($1::text[], $2::int[]) AS e(aggregate_id, expected_version)
), conflict AS (
    SELECT 1 FROM expected e
    WHERE e.expected_version <> COALESCE(
        (SELECT max(ev.aggregate_version) FROM {s}.events ev
         WHERE ev.aggregate_id = e.aggregate_id), 0)
    LIMIT 1
), seq AS (
    UPDATE {s}.global_sequence SET position = position + $3::bigint
    WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM conflict)
    RETURNING position
), inserted AS (
    INSERT INTO {s}.events (
        global_position, event_id, aggregate_id, aggregate_type, aggregate_version, event_type,
        event_version, payload, causation_id, correlation_id, user_id, metadata, occurred_at)
    SELECT seq.position - $3::bigint + t.ord, t.event_id, t.aggregate_id, t.aggregate_type,
           t.aggregate_version, t.event_type, t.event_version, t.payload::jsonb, t.causation_id,
           t.correlation_id, t.user_id, t.metadata::jsonb, t.occurred_at
    FROM seq, unnest($4::uuid[], $5::text[], $6::text[], $7::int[], $8::text[], $9::int[],
                     $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                     $15::timestamptz[])
         WITH ORDINALITY AS t(event_id, aggregate_id, aggregate_type, aggregate_version,
                              event_type, event_version, payload, causation_id, correlation_id,
                              user_id, metadata, occurred_at, ord)
    RETURNING 1
)
SELECT seq.position AS head, now() AS recorded_at, pg_notify($16, seq.position::text)
FROM seq
"""

    @property
    def aggregate_versions(self) -> str:
        """Current version of each aggregate id in ``$1`` (absent ids are left out)."""
        return (
            f"SELECT aggregate_id, max(aggregate_version) AS version FROM {self.schema}.events "
            "WHERE aggregate_id = ANY($1::text[]) GROUP BY aggregate_id"
        )

    @property
    def aggregate_version(self) -> str:
        """Current version of aggregate ``$1``, NULL when it has no events."""
        return f"SELECT max(aggregate_version) FROM {self.schema}.events WHERE aggregate_id = $1"

    @property
    def aggregate_version_at(self) -> str:
        """Version of aggregate ``$1`` among events at or below global position ``$2``."""
        return (
            f"SELECT max(aggregate_version) FROM {self.schema}.events "
            "WHERE aggregate_id = $1 AND global_position <= $2"
        )

    @property
    def load_aggregate(self) -> str:
        """Events of aggregate ``$1`` with a version above ``$2``, oldest first."""
        return (
            f"SELECT {EVENT_COLUMNS} FROM {self.schema}.events "
            "WHERE aggregate_id = $1 AND aggregate_version > $2 ORDER BY aggregate_version"
        )

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
