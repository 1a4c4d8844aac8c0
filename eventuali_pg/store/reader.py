"""Reads: one aggregate's events, the log after a position (a page, or paged as an iterator),
the head and aggregate versions. Every row becomes an event through :mod:`eventuali_pg.codec`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from .._db import Pool, Record, database_errors
from ..codec import records_to_events
from ..errors import InvalidInputError
from ..models import Event
from .keys import KeyRing
from .sql import StoreSql
from .validation import (
    check_aggregate_id,
    check_limit,
    check_name_filter,
    check_position,
)

if TYPE_CHECKING:
    from .replica_reads import ReplicaReads


class EventReader:
    """Read queries of one store, on its pool."""

    def __init__(
        self, pool: Pool, sql: StoreSql, dsn: str, *, page_size: int, keys: KeyRing
    ) -> None:
        self._pool = pool
        self._sql = sql
        self._dsn = dsn
        self._page_size = page_size
        self._keys = keys
        #: Routes reads asked to come from a replica (None: the store has no replicas).
        self.replicas: ReplicaReads | None = None

    async def decode(self, rows: list[Record]) -> list[Event]:
        """The events of ``rows``; the subject keys their personal fields need and the cache
        lacks are fetched in one query, then the page is decoded again."""
        lookup = self._keys.lookup()
        events = records_to_events(rows, lookup)
        if lookup.missing:
            await self._keys.fetch(lookup)
            events = records_to_events(rows, lookup)
        return events

    async def fetch(self, query: str, *args: Any) -> list[Record]:
        """Rows of ``query`` (driver failures raised as library errors)."""
        with database_errors(self._dsn):
            return list(await self._pool.fetch(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first value of ``query``'s first row."""
        with database_errors(self._dsn):
            return await self._pool.fetchval(query, *args)

    async def aggregate_events(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """Events of one aggregate with a version above ``from_version``, oldest first."""
        check_aggregate_id(aggregate_id)
        check_position(from_version, what="from_version")
        return await self.decode(
            await self.fetch(self._sql.load_aggregate, aggregate_id, from_version)
        )

    async def after(
        self,
        position: int,
        limit: int | None = None,
        *,
        aggregate_types: str | Iterable[str] | None = None,
        event_types: str | Iterable[str] | None = None,
        up_to: int | None = None,
        replica: bool = False,
    ) -> list[Event]:
        """Events after ``position`` (and at most ``up_to``), ascending, at most ``limit``;
        with ``replica``, from a replica as far as one can serve them (see
        :mod:`.replica_reads`)."""
        check_position(position)
        check_limit(limit)
        if up_to is not None:
            check_position(up_to, what="up_to")
        if limit == 0:
            return []
        aggregate_filter = check_name_filter(aggregate_types, what="aggregate_types")
        event_filter = check_name_filter(event_types, what="event_types")
        if replica and self.replicas is not None:
            routed = await self.replicas.after(
                position,
                limit,
                aggregate_types=aggregate_filter,
                event_types=event_filter,
                up_to=up_to,
            )
            if routed is not None:
                return routed
        query = self._sql.read_from_position(
            aggregate_types=aggregate_filter is not None,
            event_types=event_filter is not None,
            upper_bound=up_to is not None,
            limit=limit is not None,
        )
        args: list[Any] = [position]
        args += [f for f in (aggregate_filter, event_filter, up_to, limit) if f is not None]
        return await self.decode(await self.fetch(query, *args))

    async def iterate(
        self,
        position: int,
        *,
        aggregate_types: str | Iterable[str] | None = None,
        event_types: str | Iterable[str] | None = None,
        up_to: int | None = None,
        page_size: int | None = None,
        replica: bool = False,
    ) -> AsyncIterator[Event]:
        """Every event after ``position`` up to ``up_to`` (default: the head when iteration
        starts), read in pages so memory stays bounded."""
        size = self._page_size if page_size is None else page_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidInputError(f"page_size must be an integer >= 1, got {size!r}")
        target = await self.head() if up_to is None else check_position(up_to, what="up_to")
        last = check_position(position)
        while last < target:
            page = await self.after(
                last,
                size,
                aggregate_types=aggregate_types,
                event_types=event_types,
                up_to=target,
                replica=replica,
            )
            if not page:
                return
            for event in page:
                yield event
            last = page[-1].global_position or target

    async def head(self) -> int:
        """The highest committed global position; 0 when the store is empty."""
        return int(await self.fetchval(self._sql.head))

    async def notification_queue_usage(self) -> float:
        """The fraction of the server's NOTIFY queue in use (0 to 1)."""
        return float(await self.fetchval(self._sql.notification_queue_usage))

    async def aggregate_version(self, aggregate_id: str) -> int | None:
        """The current version of an aggregate, None when it has no events."""
        check_aggregate_id(aggregate_id)
        value = await self.fetchval(self._sql.aggregate_version, aggregate_id)
        return int(value) if value else None

    async def aggregate_version_at(self, aggregate_id: str, up_to: int) -> int | None:
        """The aggregate's version among events at or below global position ``up_to``."""
        check_aggregate_id(aggregate_id)
        check_position(up_to, what="up_to")
        value = await self.fetchval(self._sql.aggregate_version_at, aggregate_id, up_to)
        return int(value) if value is not None else None
