"""The membership protocol of an elastic consumer group (see :mod:`.elastic`).

Every member heartbeats its row in ``group_members`` (``expires_at`` = now + lease) and renews
the leases of the partitions it owns in ``group_partitions``. The live members, sorted by id,
deal the partitions out evenly (:func:`~.elastic.quota`). Between processing sessions a member
releases the partitions above its quota (after writing their checkpoints) and claims free ones
(no owner, or a lease that ran out) up to its quota; during a session its heartbeat only
renews and says whether a rebalance is due. All times are the database's clock.

A partition has one owner at a time: a claim takes only free partitions, with
``FOR UPDATE SKIP LOCKED``. The exactly-once fence (:meth:`GroupMembership.fence`) share-locks
the member's partition rows in the transaction of the handler's writes and refuses to commit
when one of them has moved to another member; a claim waits for no such transaction (it skips
the locked row and tries again at its next heartbeat).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, ConfigurationError
from .elastic import ElasticGroup, quota
from .leases import LeaseLost
from .sql import projection_sql

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")


class GroupMembership:
    """One member's side of the protocol, for subscription ``subscription_id``."""

    def __init__(self, store: EventStore, subscription_id: str, group: ElasticGroup) -> None:
        self._store = store
        self._subscription_id = subscription_id
        self._group = group
        self._sql = projection_sql(store.schema)
        self._joined = False

    @property
    def member_id(self) -> str:
        """This member's id."""
        return self._group.member_id

    async def join(self) -> None:
        """Register this member (creating the group's partition rows the first time); raises
        :class:`ConfigurationError` when the group was created with another number of
        partitions."""
        async with self._store.connection() as conn, conn.transaction():
            await self._join(conn)
            await self._heartbeat(conn)

    async def rebalance(self, owned: Iterable[int]) -> frozenset[int]:
        """Heartbeat, release the partitions above this member's quota (from ``owned``, the
        ones it held in the session that just ended, whose checkpoints are written), claim free
        ones up to the quota; returns the partitions this member owns now."""
        group = self._group
        async with self._store.connection() as conn, conn.transaction():
            if not self._joined:
                await self._join(conn)
            members = await self._heartbeat(conn)
            target = quota(members, group.member_id, group.partitions)
            mine = await self._renew(conn)
            if len(mine) > target:
                # Keep the ones held in the last session where possible (no re-read for them).
                held = set(owned)
                order = sorted(mine, key=lambda p: (p in held, -p))
                excess = order[: len(mine) - target]
                await conn.execute(
                    self._sql.group_partitions_release,
                    self._subscription_id,
                    group.member_id,
                    excess,
                )
                mine -= set(excess)
                logger.info(
                    "group %r: member %r released partitions %s",
                    self._subscription_id,
                    group.member_id,
                    sorted(excess),
                )
            elif len(mine) < target:
                rows = await conn.fetch(
                    self._sql.group_partitions_claim,
                    self._subscription_id,
                    group.member_id,
                    group.lease_seconds,
                    target - len(mine),
                )
                claimed = {int(row["partition"]) for row in rows}
                if claimed:
                    logger.info(
                        "group %r: member %r claimed partitions %s",
                        self._subscription_id,
                        group.member_id,
                        sorted(claimed),
                    )
                mine |= claimed
        return frozenset(mine)

    async def heartbeat(self, owned: frozenset[int]) -> bool:
        """Renew this member's leases during a session over ``owned``; True when a rebalance
        is due (more partitions than its quota, or fewer while some are free). Raises
        :class:`LeaseLost` when one of ``owned`` has moved to another member."""
        group = self._group
        async with self._store.connection() as conn, conn.transaction():
            members = await self._heartbeat(conn)
            target = quota(members, group.member_id, group.partitions)
            mine = await self._renew(conn)
            lost = owned - mine
            if lost:
                raise LeaseLost(
                    f"group {self._subscription_id!r}: member {group.member_id!r} lost "
                    f"partitions {sorted(lost)} to another member (its heartbeat came too late)"
                )
            if len(mine) > target:
                return True
            if len(mine) < target:
                free = await conn.fetchval(self._sql.group_partitions_free, self._subscription_id)
                return bool(free)
            return False

    async def fence(self, connection: Any, owned: frozenset[int]) -> None:
        """In the caller's transaction: share-lock this member's rows of ``owned`` and raise
        :class:`CheckpointError` (the transaction must roll back) when one is not its own."""
        rows = await connection.fetch(
            self._sql.group_partitions_fence,
            self._subscription_id,
            self._group.member_id,
            sorted(owned),
        )
        if len(rows) != len(owned):
            still = {int(row["partition"]) for row in rows}
            raise CheckpointError(
                f"group {self._subscription_id!r}: partitions {sorted(owned - still)} moved from "
                f"member {self._group.member_id!r} to another member; this member's batch is "
                "refused and it rebalances"
            )

    async def release(self, partitions: Iterable[int]) -> None:
        """Give ``partitions`` up (their checkpoints must be written first)."""
        chosen = sorted(partitions)
        if not chosen:
            return
        async with self._store.connection() as conn:
            await conn.execute(
                self._sql.group_partitions_release,
                self._subscription_id,
                self._group.member_id,
                chosen,
            )

    async def leave(self) -> None:
        """Release every partition of this member and remove its row (a clean stop)."""
        if not self._joined:
            return
        async with self._store.connection() as conn, conn.transaction():
            await conn.execute(
                self._sql.group_partitions_release_all,
                self._subscription_id,
                self._group.member_id,
            )
            await conn.execute(
                self._sql.group_member_leave, self._subscription_id, self._group.member_id
            )
        self._joined = False
        logger.info("group %r: member %r left", self._subscription_id, self._group.member_id)

    async def _join(self, conn: Any) -> None:
        group = self._group
        await conn.execute(
            self._sql.group_partitions_create, self._subscription_id, group.partitions
        )
        counts = {
            int(r[0])
            for r in await conn.fetch(self._sql.group_partition_counts, self._subscription_id)
        }
        if counts != {group.partitions}:
            raise ConfigurationError(
                f"consumer group {self._subscription_id!r} has {sorted(counts)} partitions "
                f"recorded, this member was given partitions={group.partitions}: every member "
                "must use the same number, fixed for the life of the subscription (give the "
                "projection a new version to change it)"
            )
        self._joined = True
        logger.info("group %r: member %r joined", self._subscription_id, group.member_id)

    async def _heartbeat(self, conn: Any) -> list[str]:
        group = self._group
        await conn.execute(
            self._sql.group_member_heartbeat,
            self._subscription_id,
            group.member_id,
            group.partitions,
            group.lease_seconds,
        )
        await conn.execute(self._sql.group_members_expire, self._subscription_id)
        rows = await conn.fetch(self._sql.group_members_live, self._subscription_id)
        return [str(row["member_id"]) for row in rows]

    async def _renew(self, conn: Any) -> set[int]:
        rows = await conn.fetch(
            self._sql.group_partitions_renew,
            self._subscription_id,
            self._group.member_id,
            self._group.lease_seconds,
        )
        return {int(row["partition"]) for row in rows}
