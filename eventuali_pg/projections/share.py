"""Reading one elastic-group member's share of the log, and waking it when there is more.

:class:`ShareReader` reads the head, then the events after a position, within a bounded window
below that head, whose partition is one of the member's, filtered in SQL (the partition hash
is a cheap expression on the aggregate id, evaluated along the primary-key range scan; only the
share is sent and decoded). Positions are dense and commit-ordered, so once the head is read
every event up to it is visible: a page shorter than asked means the member's partitions are
covered up to the window's end, including the events of other partitions it skipped.

:class:`Doorbell` is one per store (a store resource): the store's commit listener for this
process's appends, and a LISTEN connection of its own for other processes' (unless the store
polls only). It reads no events; each member waiting on it reads its own share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..codec import records_to_events
from ..stream.listener import NotificationListener
from ..stream.stream_event import StreamEvent
from .sql import projection_sql

if TYPE_CHECKING:
    from ..store.event_store import EventStore

DOORBELL_RESOURCE = "elastic-group-doorbell"


class ShareReader:
    """Pages of one member's share of ``store``'s events."""

    def __init__(
        self,
        store: EventStore,
        partitions: int,
        *,
        aggregate_types: frozenset[str] | None = None,
        event_types: frozenset[str] | None = None,
    ) -> None:
        self._store = store
        self._partitions = partitions
        self._aggregate_types = sorted(aggregate_types) if aggregate_types else None
        self._event_types = sorted(event_types) if event_types else None
        self._sql = projection_sql(store.schema)

    async def page(
        self, after: int, owned: Sequence[int], limit: int
    ) -> tuple[list[StreamEvent], int, bool]:
        """Up to ``limit`` events of partitions ``owned`` after position ``after``; the
        position up to which ``owned`` is covered by this read (the last event's when the page
        is full, else the upper end of the window read); and whether there is more to read.

        One read looks at a window of positions sized to hold about ``limit`` events of the
        share (``limit * partitions / len(owned)``), so every read scans a bounded range
        whatever the plan, and catching up scans the log once.
        """
        head = await self._store.get_global_position()
        if head <= after or not owned:
            return [], after, False
        window = max(limit, limit * self._partitions // len(owned))
        upper = min(head, after + window)
        async with self._store.connection() as conn:
            rows = await conn.fetch(
                self._sql.share_page,
                after,
                upper,
                self._partitions,
                list(owned),
                limit,
                self._aggregate_types,
                self._event_types,
            )
        items = [StreamEvent.from_stored(event) for event in records_to_events(rows)]
        if len(items) == limit:
            return items, items[-1].global_position, True
        return items, upper, upper < head


class Doorbell:
    """Rings every waiting member when the store's head may have moved."""

    def __init__(self, store: EventStore) -> None:
        options = store.options
        self._store = store
        self._waiters: set[asyncio.Event] = set()
        self._listener = (
            NotificationListener(
                store.connector,
                store.channel,
                self.ring,
                heartbeat_interval=options.heartbeat_interval,
                heartbeat_timeout=options.heartbeat_timeout,
            )
            if options.notify
            else None
        )

    async def start(self) -> None:
        """Listen to this process's commits, then to the channel (returns once LISTEN is
        active, unless the store polls only)."""
        self._store.add_commit_listener(self.ring)
        if self._listener is not None:
            try:
                await self._listener.start()
            except BaseException:
                await self.close()
                raise

    def ring(self, _head: int | None = None) -> None:
        """Wake every waiter."""
        for waiter in self._waiters:
            waiter.set()

    def waiter(self) -> asyncio.Event:
        """An event set at every ring, until :meth:`forget` (the caller clears it)."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, waiter: asyncio.Event) -> None:
        """Stop ringing ``waiter``."""
        self._waiters.discard(waiter)

    async def close(self) -> None:
        """Stop listening. Idempotent."""
        self._store.remove_commit_listener(self.ring)
        if self._listener is not None:
            await self._listener.close()


async def doorbell_of(store: EventStore) -> Doorbell:
    """The store's doorbell, started the first time it is asked for."""

    async def start() -> Doorbell:
        doorbell = Doorbell(store)
        await doorbell.start()
        return doorbell

    return await store.resource(DOORBELL_RESOURCE, start)
