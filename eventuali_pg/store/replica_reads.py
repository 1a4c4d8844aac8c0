"""Catch-up reads served by hot-standby replicas, handed over to the primary with no gap.

A standby replays commits in commit order, and every append advances the counter row in the
same transaction as its events, so a standby always holds a complete prefix of the log: every
position up to its counter row, and nothing above it. A routed read of the events after
``position`` therefore runs in two parts:

1. on a replica: read its counter row ``h``, then the events in ``(position, min(up_to, h)]``;
2. if that part is not a full page and stopped short of ``up_to`` (or the head), the rest on the
   primary: the events in ``(min(up_to, h), up_to]``.

Positions are dense and final (C1), so the two parts meet exactly: no event is missed or read
twice, and the result is what the primary alone would have returned. A read goes to a replica
only while it starts more than ``min_distance`` events behind the primary's head, and only to a
replica whose lag (the primary's counter row minus its own, in events) is at most ``max_lag``;
any failure of the replica sends the read to the primary and sets the replica aside for a while.
Appends, aggregate loads, the live feed and LISTEN never come here.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._db import Connection, Record
from .._db.replicas import Replica, ReplicaUnavailable
from ..models import Event
from .sql import StoreSql

if TYPE_CHECKING:
    from .options import StoreOptions
    from .reader import EventReader

#: Seconds the primary's head is remembered for routing decisions (a stale value only sends
#: more reads to the primary, never a wrong one).
PRIMARY_HEAD_TTL = 0.5


@dataclass(frozen=True)
class ReplicaStats:
    """One replica's figures: where it is, how far behind, and how it has served."""

    #: Host, port and database (never the password).
    replica: str
    #: The replica's counter row at the last check, None before any.
    head: int | None
    #: Events the replica was behind the primary's head at the last check, None before any.
    lag: int | None
    #: False while it is set aside after a failure or for being too far behind.
    available: bool
    #: Seconds until a set-aside replica is tried again.
    retry_in: float
    #: Reads it served.
    reads: int
    #: Reads that failed on it and went to the primary.
    failures: int
    #: Why it was last set aside, None if never.
    last_error: str | None


class ReplicaReads:
    """Routes catch-up reads of one store between its replicas and the primary."""

    def __init__(self, primary: EventReader, sql: StoreSql, options: StoreOptions) -> None:
        self._primary = primary
        self._sql = sql
        self._min_distance = options.replica_min_distance
        self._max_lag = options.replica_max_lag
        self._replicas = [
            Replica(
                dsn,
                connect_timeout=float(options.connect_timeout),
                statement_cache_size=options.statement_cache_size,
                max_size=options.pool_max_size,
                retry_interval=float(options.replica_retry_interval),
            )
            for dsn in options.replica_dsns
        ]
        self._next = 0
        self._primary_head = 0
        self._primary_head_at = -PRIMARY_HEAD_TTL
        self.replica_reads = 0
        self.primary_reads = 0
        self.handovers = 0

    @property
    def replicas(self) -> Sequence[Replica]:
        """The replicas, in the order they were given."""
        return tuple(self._replicas)

    async def after(
        self,
        position: int,
        limit: int | None,
        *,
        aggregate_types: Collection[str] | None,
        event_types: Collection[str] | None,
        up_to: int | None,
    ) -> list[Event] | None:
        """The events :meth:`EventReader.after` would return (arguments already validated),
        read from a replica up to its head and from the primary beyond; None when no replica
        should serve this read (the caller reads the primary)."""
        primary_head = await self._primary_head_for(position, up_to)
        if primary_head - position <= self._min_distance:
            return None
        for replica in self._candidates():
            try:
                head, rows = await replica.run(
                    functools.partial(
                        self._read,
                        replica=replica,
                        primary_head=primary_head,
                        position=position,
                        limit=limit,
                        aggregate_types=aggregate_types,
                        event_types=event_types,
                        up_to=up_to,
                    )
                )
            except ReplicaUnavailable:
                continue
            if rows is None:
                continue  # too far behind, or nothing to read there: try the next one
            self.replica_reads += 1
            events = await self._primary.decode(rows)  # keys come from the primary
            bound = head if up_to is None else min(up_to, head)
            if (limit is not None and len(events) >= limit) or (
                up_to is not None and bound >= up_to
            ):
                return events
            self.handovers += 1
            rest = await self._primary.after(
                bound,
                None if limit is None else limit - len(events),
                aggregate_types=aggregate_types,
                event_types=event_types,
                up_to=up_to,
            )
            return events + rest
        self.primary_reads += 1
        return None

    async def _read(
        self,
        connection: Connection,
        *,
        replica: Replica,
        primary_head: int,
        position: int,
        limit: int | None,
        aggregate_types: Collection[str] | None,
        event_types: Collection[str] | None,
        up_to: int | None,
    ) -> tuple[int, list[Record] | None]:
        head = int(await connection.fetchval(self._sql.head) or 0)
        primary_head = max(primary_head, head)
        replica.head, replica.primary_head = head, primary_head
        lag = primary_head - head
        if lag > self._max_lag:
            replica.set_aside(
                f"{lag} events behind the primary (replica_max_lag is {self._max_lag})",
                failed=False,
            )
            return head, None
        bound = head if up_to is None else min(up_to, head)
        if bound <= position:
            return head, None
        query = self._sql.read_from_position(
            aggregate_types=aggregate_types is not None,
            event_types=event_types is not None,
            upper_bound=True,
            limit=limit is not None,
        )
        args: list[Any] = [position]
        args += [f for f in (aggregate_types, event_types, bound, limit) if f is not None]
        return head, list(await connection.fetch(query, *args))

    def _candidates(self) -> list[Replica]:
        """Usable replicas, starting with the next in turn (reads spread over them)."""
        count = len(self._replicas)
        start, self._next = self._next, (self._next + 1) % max(count, 1)
        ordered = self._replicas[start:] + self._replicas[:start]
        return [replica for replica in ordered if replica.usable()]

    async def _primary_head_for(self, position: int, up_to: int | None) -> int:
        now = time.monotonic()
        if now - self._primary_head_at >= PRIMARY_HEAD_TTL:
            self._primary_head = await self._primary.head()
            self._primary_head_at = now
        # Positions the caller has seen are committed: the head is at least there.
        return max(self._primary_head, position, up_to or 0)

    async def check(self) -> list[ReplicaStats]:
        """Measure every replica's lag now (its counter row against the primary's), including
        set-aside ones; a replica that cannot be read keeps its last figures."""
        primary_head = await self._primary.head()
        self._primary_head, self._primary_head_at = primary_head, time.monotonic()

        async def measure(replica: Replica) -> None:
            async def read_head(connection: Connection) -> int:
                return int(await connection.fetchval(self._sql.head) or 0)

            try:
                replica.head = await replica.run(read_head)
                replica.primary_head = max(primary_head, replica.head)
            except ReplicaUnavailable:
                pass

        await asyncio.gather(*(measure(replica) for replica in self._replicas))
        return self.stats()

    def stats(self) -> list[ReplicaStats]:
        """Every replica's figures as of its last read or check."""
        return [
            ReplicaStats(
                replica=replica.label,
                head=replica.head,
                lag=(
                    None
                    if replica.head is None or replica.primary_head is None
                    else max(0, replica.primary_head - replica.head)
                ),
                available=replica.usable(),
                retry_in=round(replica.retry_in(), 3),
                reads=replica.reads,
                failures=replica.failures,
                last_error=replica.last_error,
            )
            for replica in self._replicas
        ]

    async def close(self) -> None:
        """Close every replica's pool."""
        for replica in self._replicas:
            await replica.close()
