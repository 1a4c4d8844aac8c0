"""Events, projections and runner settings of the projection hardening tests.

Event classes register globally by type name; these names are unique to these tests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg.projections import Projection, TransactionalProjection

#: Only a hang detector: the operations under it must complete, however long they take.
HANG = 30.0

#: Fast retries, so that parking an event does not take long.
FAST_RETRIES: dict[str, Any] = {"max_attempts": 3, "retry_delay": 0.001, "max_retry_delay": 0.01}


class HardTicked(Event, event_type="projh.Ticked"):
    poison: bool = False


class HardTicker(Aggregate):
    aggregate_type = "projh.Ticker"

    def tick(self, *, poison: bool = False) -> None:
        self.apply(HardTicked(poison=poison))

    def apply_projh_ticked(self, event: HardTicked) -> None:
        pass


class HardNoted(Event, event_type="projh.Noted"):
    text: str = ""


class HardNotebook(Aggregate):
    """Another aggregate type, for filtered subscriptions to skip."""

    aggregate_type = "projh.Notebook"

    def note(self, text: str = "") -> None:
        self.apply(HardNoted(text=text))

    def apply_projh_noted(self, event: HardNoted) -> None:
        pass


async def save_ticks(store: EventStore, count: int, *, prefix: str = "h") -> None:
    """``count`` good events, one per aggregate."""
    tickers = [HardTicker(id=f"{prefix}-{i:04d}") for i in range(count)]
    for ticker in tickers:
        ticker.tick()
    await store.save_all(tickers)


async def save_poison(store: EventStore, aggregate_id: str = "poison-1") -> int:
    """One poison event; returns its position."""
    ticker = HardTicker(id=aggregate_id)
    ticker.tick(poison=True)
    await store.save(ticker)
    return await store.get_global_position()


async def save_notes(store: EventStore, count: int, *, prefix: str = "n") -> None:
    """``count`` events of the other aggregate type."""
    books = [HardNotebook(id=f"{prefix}-{i:04d}") for i in range(count)]
    for book in books:
        book.note("skip me")
    await store.save_all(books)


#: What a handler does with a poison event: raise, or anything else that fails.
Failure = Callable[[Event], Awaitable[None]]


async def _fail_with(event: Event, failure: Failure) -> None:
    if getattr(event, "poison", False):
        await failure(event)


class FailingAtLeastOnce(Projection):
    """Counts the calls per position; ``failure`` runs on poison events."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        self.calls: Counter[int] = Counter()

    async def handle_event(self, event: Event) -> None:
        assert event.global_position is not None
        self.calls[event.global_position] += 1
        await _fail_with(event, self.failure)


class FailingExactlyOnce(TransactionalProjection):
    """Counts the calls per position and writes nothing; ``failure`` gets the connection too."""

    def __init__(self, failure: Callable[[Event, Any], Awaitable[None]]) -> None:
        self.failure = failure
        self.calls: Counter[int] = Counter()

    async def handle_event(self, event: Event, connection: Any) -> None:
        assert event.global_position is not None
        self.calls[event.global_position] += 1
        await connection.execute("SELECT 1")
        if getattr(event, "poison", False):
            await self.failure(event, connection)


async def cancelled_inner_task() -> None:
    """Await a task that someone else cancelled: raises CancelledError in the caller."""
    inner = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    inner.cancel()
    await inner
