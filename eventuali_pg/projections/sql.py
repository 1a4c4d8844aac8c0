"""Every SQL statement of the projections package, built once per schema name.

Schema names are validated identifiers; every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .._identifiers import validate_identifier
from ..personal import FORGET_EVENT_TYPE, FORGET_STREAM
from ..store.sql import EVENT_COLUMNS

#: The partition hash of an elastic group in SQL: the first 32 bits of the MD5 of the aggregate
#: id, unsigned (``partition = hash % partitions``). Python computes the same value with
#: hashlib (:func:`eventuali_pg.projections.elastic.share_hash`).
SHARE_HASH = "('x' || substr(md5(aggregate_id), 1, 8))::bit(32)::bigint"


@dataclass(frozen=True)
class ProjectionSql:
    """The statements of the projection tables (checkpoints, dead letters) of one schema."""

    schema: str

    @property
    def checkpoint_get(self) -> str:
        """Stored position of checkpoint ``$1`` (no row when there is none)."""
        return f"SELECT position FROM {self.schema}.checkpoints WHERE subscription_id = $1"

    @property
    def checkpoint_advance(self) -> str:
        """Move checkpoint ``$1`` forward to ``$2`` (creating it); a row only when it moved.

        Forward only: an existing checkpoint at or beyond ``$2`` is left alone and no row comes
        back; the caller then tells "already there" from "would go backwards".
        """
        s = self.schema
        return f"""
INSERT INTO {s}.checkpoints AS c (subscription_id, position, updated_at)
VALUES ($1, $2, now())
ON CONFLICT (subscription_id) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
WHERE c.position < EXCLUDED.position
RETURNING position
"""

    @property
    def checkpoint_advance_from(self) -> str:
        """Move checkpoint ``$1`` from exactly ``$3`` forward to ``$2``; a row only when it moved.

        A fence: no row means another consumer moved (or reset) the checkpoint meanwhile. The
        row lock taken here holds until the transaction ends, so two consumers advancing one
        checkpoint take turns and the second one's condition no longer holds.
        """
        return (
            f"UPDATE {self.schema}.checkpoints SET position = $2, updated_at = now() "
            "WHERE subscription_id = $1 AND position = $3 AND position < $2 RETURNING position"
        )

    @property
    def checkpoint_create(self) -> str:
        """Create checkpoint ``$1`` at ``$2`` unless it exists; a row only when created."""
        return (
            f"INSERT INTO {self.schema}.checkpoints (subscription_id, position, updated_at) "
            "VALUES ($1, $2, now()) ON CONFLICT (subscription_id) DO NOTHING RETURNING position"
        )


    @property
    def version_register(self) -> str:
        """Record version ``$2`` of ``$1`` (replaying up to ``$3``) unless recorded; the first
        version of a subscription is active. Returns the recorded row."""
        s = self.schema
        return f"""
WITH inserted AS (
    INSERT INTO {s}.projection_versions (subscription_id, version, replay_until, active)
    SELECT $1, $2, $3, NOT EXISTS (
        SELECT 1 FROM {s}.projection_versions WHERE subscription_id = $1)
    ON CONFLICT (subscription_id, version) DO NOTHING
    RETURNING replay_until
)
SELECT replay_until FROM inserted
UNION ALL
SELECT replay_until FROM {s}.projection_versions WHERE subscription_id = $1 AND version = $2
LIMIT 1
"""

    @property
    def version_replay_from(self) -> str:
        """Events of version ``$2`` of ``$1`` up to ``$3`` are a replay (after a reset)."""
        return (
            f"UPDATE {self.schema}.projection_versions SET replay_until = $3 "
            "WHERE subscription_id = $1 AND version = $2"
        )

    @property
    def version_list(self) -> str:
        """Recorded versions (of ``$1``, all when NULL) with their lowest checkpoint."""
        s = self.schema
        return f"""
SELECT v.subscription_id, v.version, v.replay_until, v.active,
       (SELECT min(c.position) FROM {s}.checkpoints c
        WHERE c.subscription_id = CASE WHEN v.version = 1 THEN v.subscription_id
                                       ELSE v.subscription_id || '@v' || v.version END
           OR c.subscription_id LIKE (CASE WHEN v.version = 1 THEN v.subscription_id
                                           ELSE v.subscription_id || '@v' || v.version END)
                                     || '#%') AS checkpoint
FROM {s}.projection_versions v
WHERE $1::text IS NULL OR v.subscription_id = $1
ORDER BY v.subscription_id, v.version
"""

    @property
    def version_activate(self) -> str:
        """Make version ``$2`` the active one of ``$1``."""
        return (
            f"UPDATE {self.schema}.projection_versions SET active = (version = $2) "
            "WHERE subscription_id = $1"
        )

    @property
    def version_retire_checkpoints(self) -> str:
        """Delete checkpoint ``$1`` and those matching ``$2`` (its partitions)."""
        return (
            f"DELETE FROM {self.schema}.checkpoints "
            "WHERE subscription_id = $1 OR subscription_id LIKE $2"
        )

    @property
    def version_delete(self) -> str:
        """Forget version ``$2`` of ``$1``."""
        return (
            f"DELETE FROM {self.schema}.projection_versions "
            "WHERE subscription_id = $1 AND version = $2"
        )

    @property
    def checkpoints_advance_from(self) -> str:
        """Move each checkpoint of ``$1`` from exactly its ``$2`` to ``$3`` (creating it when
        expected at 0); returns how many moved. Fewer than ``$1`` has: a fence failed."""
        s = self.schema
        return f"""
WITH wanted AS (
    SELECT * FROM unnest($1::text[], $2::bigint[]) AS w(id, expected)
), moved AS (
    UPDATE {s}.checkpoints c SET position = $3, updated_at = now() FROM wanted w
    WHERE c.subscription_id = w.id AND c.position = w.expected
    RETURNING c.subscription_id
), created AS (
    INSERT INTO {s}.checkpoints (subscription_id, position, updated_at)
    SELECT w.id, $3, now() FROM wanted w WHERE w.expected = 0
    ON CONFLICT (subscription_id) DO NOTHING
    RETURNING subscription_id
)
SELECT (SELECT count(*) FROM moved) + (SELECT count(*) FROM created)
"""

    @property
    def checkpoints_get(self) -> str:
        """Positions of the checkpoints ``$1`` (absent ones are left out)."""
        return (
            f"SELECT subscription_id, position FROM {self.schema}.checkpoints "
            "WHERE subscription_id = ANY($1::text[])"
        )

    @property
    def checkpoint_set(self) -> str:
        """Set checkpoint ``$1`` to ``$2`` whatever it was (explicit reset)."""
        return (
            f"INSERT INTO {self.schema}.checkpoints (subscription_id, position, updated_at) "
            "VALUES ($1, $2, now()) ON CONFLICT (subscription_id) DO UPDATE "
            "SET position = EXCLUDED.position, updated_at = now()"
        )

    @property
    def checkpoint_delete(self) -> str:
        """Forget checkpoint ``$1``."""
        return f"DELETE FROM {self.schema}.checkpoints WHERE subscription_id = $1"

    @property
    def checkpoint_list(self) -> str:
        """Every checkpoint whose id starts with ``$1``."""
        return (
            f"SELECT subscription_id, position, updated_at FROM {self.schema}.checkpoints "
            "WHERE starts_with(subscription_id, $1) ORDER BY subscription_id"
        )

    @property
    def dead_letter_park(self) -> str:
        """Park an event (``$1`` subscription, ``$2`` position, ...); a second failure of the
        same event adds its attempts and replaces the error."""
        s = self.schema
        return f"""
INSERT INTO {s}.dead_letters AS d (
    subscription_id, global_position, event_id, aggregate_id, aggregate_type, event_type, event,
    error, traceback, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10)
ON CONFLICT (subscription_id, global_position) DO UPDATE
SET error = EXCLUDED.error, traceback = EXCLUDED.traceback,
    attempts = d.attempts + EXCLUDED.attempts, last_failed_at = now()
"""

    @property
    def dead_letter_failed_again(self) -> str:
        """Record another failed attempt of parked event (``$1``, ``$2``)."""
        return (
            f"UPDATE {self.schema}.dead_letters SET error = $3, traceback = $4, "
            "attempts = attempts + $5, last_failed_at = now() "
            "WHERE subscription_id = $1 AND global_position = $2"
        )

    @property
    def dead_letter_columns(self) -> str:
        """The columns a :class:`DeadLetter` is built from."""
        return (
            "subscription_id, global_position, event_id, aggregate_id, aggregate_type, "
            "event_type, event::text AS event, error, traceback, attempts, parked_at, "
            "last_failed_at"
        )

    @property
    def dead_letter_list(self) -> str:
        """Parked events of subscription ``$1`` (every subscription when NULL), oldest first."""
        return (
            f"SELECT {self.dead_letter_columns} FROM {self.schema}.dead_letters "
            "WHERE $1::text IS NULL OR subscription_id = $1 "
            "ORDER BY subscription_id, global_position LIMIT $2"
        )

    @property
    def dead_letter_get(self) -> str:
        """One parked event (``$1`` subscription, ``$2`` position)."""
        return (
            f"SELECT {self.dead_letter_columns} FROM {self.schema}.dead_letters "
            "WHERE subscription_id = $1 AND global_position = $2"
        )

    @property
    def dead_letter_get_for_update(self) -> str:
        """One parked event, locked until the transaction ends (so two retries take turns)."""
        return (
            f"SELECT {self.dead_letter_columns} FROM {self.schema}.dead_letters "
            "WHERE subscription_id = $1 AND global_position = $2 FOR UPDATE"
        )

    @property
    def dead_letter_delete(self) -> str:
        """Remove parked event (``$1``, ``$2``); returns it when it was there."""
        return (
            f"DELETE FROM {self.schema}.dead_letters "
            "WHERE subscription_id = $1 AND global_position = $2 RETURNING global_position"
        )

    @property
    def dead_letter_delete_all(self) -> str:
        """Remove every parked event of subscription ``$1``."""
        return f"DELETE FROM {self.schema}.dead_letters WHERE subscription_id = $1"

    @property
    def dead_letter_count(self) -> str:
        """Number of parked events of subscription ``$1``."""
        return f"SELECT count(*) FROM {self.schema}.dead_letters WHERE subscription_id = $1"

    # -- elastic consumer groups (membership.py, share.py) -------------------------------------

    @property
    def share_page(self) -> str:
        """Events after ``$1`` up to ``$2`` whose partition (of ``$3`` partitions) is one of
        ``$4``, in position order, at most ``$5``: one member's share, filtered in SQL (and by
        aggregate types ``$6`` and event types ``$7``, each NULL for all). The events
        :meth:`EventStore.forget` appends go to every member, whatever the filters
        (``on_forget`` is due in each)."""
        return (
            f"SELECT {EVENT_COLUMNS} FROM {self.schema}.events "
            f"WHERE global_position > $1 AND global_position <= $2 "
            f"AND (({SHARE_HASH} % $3 = ANY($4::bigint[]) "
            "AND ($6::text[] IS NULL OR aggregate_type = ANY($6::text[])) "
            "AND ($7::text[] IS NULL OR event_type = ANY($7::text[]))) "
            f"OR (aggregate_id = '{FORGET_STREAM}' AND event_type = '{FORGET_EVENT_TYPE}')) "
            "ORDER BY global_position LIMIT $5"
        )

    @property
    def group_partitions_create(self) -> str:
        """The ``$2`` partition rows of group ``$1`` (the ones missing)."""
        return (
            f"INSERT INTO {self.schema}.group_partitions (subscription_id, partition, partitions) "
            "SELECT $1, p, $2 FROM generate_series(0, $2 - 1) AS p ON CONFLICT DO NOTHING"
        )

    @property
    def group_partition_counts(self) -> str:
        """The partition counts recorded for group ``$1`` (one, unless misconfigured)."""
        return (
            f"SELECT DISTINCT partitions FROM {self.schema}.group_partitions "
            "WHERE subscription_id = $1 UNION "
            f"SELECT DISTINCT partitions FROM {self.schema}.group_members "
            "WHERE subscription_id = $1 AND expires_at >= now()"
        )

    @property
    def group_member_heartbeat(self) -> str:
        """Register member ``$2`` of group ``$1`` (``$3`` partitions), alive for ``$4`` s."""
        return f"""
INSERT INTO {self.schema}.group_members AS m
    (subscription_id, member_id, partitions, joined_at, heartbeat_at, expires_at)
VALUES ($1, $2, $3, now(), now(), now() + make_interval(secs => $4))
ON CONFLICT (subscription_id, member_id) DO UPDATE
SET heartbeat_at = now(), expires_at = EXCLUDED.expires_at, partitions = EXCLUDED.partitions
"""

    @property
    def group_members_expire(self) -> str:
        """Forget the members of group ``$1`` whose heartbeat ran out."""
        return (
            f"DELETE FROM {self.schema}.group_members "
            "WHERE subscription_id = $1 AND expires_at < now()"
        )

    @property
    def group_members_live(self) -> str:
        """Live members of group ``$1``, by id (the order that deals out the shares)."""
        return (
            f"SELECT member_id FROM {self.schema}.group_members "
            "WHERE subscription_id = $1 AND expires_at >= now() ORDER BY member_id"
        )

    @property
    def group_partitions_renew(self) -> str:
        """Extend member ``$2``'s leases in group ``$1`` by ``$3`` s; returns its partitions.

        A lease that ran out but was not claimed by another member is still this member's:
        nobody else has processed the partition, so keeping it is safe.
        """
        return (
            f"UPDATE {self.schema}.group_partitions "
            "SET lease_expires_at = now() + make_interval(secs => $3) "
            "WHERE subscription_id = $1 AND owner = $2 RETURNING partition"
        )

    @property
    def group_partitions_claim(self) -> str:
        """Give member ``$2`` of group ``$1`` up to ``$4`` free partitions (no owner, or a
        lease that ran out), leased for ``$3`` s; returns them. A partition whose row is locked
        (its owner's transaction is committing) is skipped, never waited for."""
        s = self.schema
        return f"""
UPDATE {s}.group_partitions g
SET owner = $2, owned_since = now(), lease_expires_at = now() + make_interval(secs => $3)
FROM (
    SELECT partition FROM {s}.group_partitions
    WHERE subscription_id = $1 AND (owner IS NULL OR lease_expires_at < now())
    ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED
) AS free
WHERE g.subscription_id = $1 AND g.partition = free.partition
RETURNING g.partition
"""

    @property
    def group_partitions_free(self) -> str:
        """How many partitions of group ``$1`` have no live owner."""
        return (
            f"SELECT count(*) FROM {self.schema}.group_partitions "
            "WHERE subscription_id = $1 AND (owner IS NULL OR lease_expires_at < now())"
        )

    @property
    def group_partitions_release(self) -> str:
        """Member ``$2`` of group ``$1`` gives partitions ``$3`` up."""
        return (
            f"UPDATE {self.schema}.group_partitions "
            "SET owner = NULL, owned_since = NULL, lease_expires_at = NULL "
            "WHERE subscription_id = $1 AND owner = $2 AND partition = ANY($3::int[])"
        )

    @property
    def group_partitions_release_all(self) -> str:
        """Member ``$2`` of group ``$1`` gives every partition up."""
        return (
            f"UPDATE {self.schema}.group_partitions "
            "SET owner = NULL, owned_since = NULL, lease_expires_at = NULL "
            "WHERE subscription_id = $1 AND owner = $2"
        )

    @property
    def group_member_leave(self) -> str:
        """Member ``$2`` leaves group ``$1`` (its partitions are released first)."""
        return (
            f"DELETE FROM {self.schema}.group_members WHERE subscription_id = $1 AND member_id = $2"
        )

    @property
    def group_partitions_fence(self) -> str:
        """Which of partitions ``$3`` member ``$2`` of group ``$1`` owns, share-locked until
        the transaction ends (a claim by another member waits for this commit)."""
        return (
            f"SELECT partition FROM {self.schema}.group_partitions "
            "WHERE subscription_id = $1 AND owner = $2 AND partition = ANY($3::int[]) FOR SHARE"
        )

    @property
    def group_status(self) -> str:
        """Every partition of every elastic group, with its owner, lease and checkpoint."""
        s = self.schema
        return f"""
SELECT g.subscription_id, g.partition, g.partitions, g.owner,
       g.owner IS NOT NULL AND g.lease_expires_at >= now() AS leased,
       c.position AS checkpoint
FROM {s}.group_partitions g
LEFT JOIN {s}.checkpoints c
       ON c.subscription_id
          = g.subscription_id || '#share-' || g.partition || '-of-' || g.partitions
ORDER BY g.subscription_id, g.partition
"""

    @property
    def group_member_status(self) -> str:
        """Every member row of every elastic group (live or not yet expired away)."""
        return (
            "SELECT subscription_id, member_id, partitions, joined_at, heartbeat_at, "
            f"expires_at >= now() AS alive FROM {self.schema}.group_members "
            "ORDER BY subscription_id, member_id"
        )

    @staticmethod
    def try_lock() -> str:
        """Try to take the session advisory lock named ``$1`` (hashed to 64 bits in SQL)."""
        return "SELECT pg_try_advisory_lock(hashtextextended($1::text, 0))"

    @staticmethod
    def unlock() -> str:
        """Release the session advisory lock named ``$1``."""
        return "SELECT pg_advisory_unlock(hashtextextended($1::text, 0))"


@cache
def projection_sql(schema: str) -> ProjectionSql:
    """The statements for ``schema`` (validated)."""
    validate_identifier(schema, what="schema name")
    return ProjectionSql(schema=schema)
