"""Event and aggregate classes of the streaming tests, and helpers to consume receivers.

Event classes register globally by type name, so each one is defined here once and imported.
The ``User``/``Order`` names follow the EventStreamer spec's examples.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from eventuali_pg import Aggregate, Event, EventStreamReceiver, StreamEvent

# -- events ------------------------------------------------------------------------------------


class UserRegistered(Event):
    name: str
    email: str


class UserEmailChanged(Event):
    email: str


class UserDeactivated(Event):
    reason: str = ""


class OrderPlaced(Event):
    total_cents: int


class OrderShipped(Event):
    carrier: str = "post"


class Ticked(Event):
    """The bulk event of the torture tests: ``n`` numbers the ticks of one writer."""

    n: int
    writer: str = ""


# -- aggregates --------------------------------------------------------------------------------


class User(Aggregate):
    name: str = ""
    email: str = ""
    active: bool = False

    def register(self, name: str, email: str) -> Event:
        return self.apply(UserRegistered(name=name, email=email))

    def change_email(self, email: str) -> Event:
        return self.apply(UserEmailChanged(email=email))

    def deactivate(self, reason: str = "") -> Event:
        return self.apply(UserDeactivated(reason=reason))

    def apply_user_registered(self, event: UserRegistered) -> None:
        self.name, self.email, self.active = event.name, event.email, True

    def apply_user_email_changed(self, event: UserEmailChanged) -> None:
        self.email = event.email

    def apply_user_deactivated(self, event: UserDeactivated) -> None:
        self.active = False


class Order(Aggregate):
    total_cents: int = 0
    shipped: bool = False

    def place(self, total_cents: int) -> Event:
        return self.apply(OrderPlaced(total_cents=total_cents))

    def ship(self, carrier: str = "post") -> Event:
        return self.apply(OrderShipped(carrier=carrier))

    def apply_order_placed(self, event: OrderPlaced) -> None:
        self.total_cents = event.total_cents

    def apply_order_shipped(self, event: OrderShipped) -> None:
        self.shipped = True

    def apply_order_ghosted(self, event: Event) -> None:
        """Accepts an event type no class is registered for (see the generic-event test)."""


class Ticker(Aggregate):
    count: int = 0

    def tick(self, n: int, writer: str = "") -> Event:
        return self.apply(Ticked(n=n, writer=writer))

    def apply_ticked(self, event: Ticked) -> None:
        self.count += 1


def tickers(aggregates: int, events_each: int, *, writer: str = "", start: int = 0) -> list[Ticker]:
    """``aggregates`` new tickers holding ``events_each`` uncommitted events each."""
    result = []
    n = start
    for _ in range(aggregates):
        ticker = Ticker()
        for _ in range(events_each):
            ticker.tick(n, writer)
            n += 1
        result.append(ticker)
    return result


# -- consuming receivers -----------------------------------------------------------------------

_running: set[Collector] = set()


async def cancel_leftover_collectors() -> None:
    """Cancel the collectors a failed test left running (use in a fixture's teardown)."""
    for collector in list(_running):
        await collector.cancel()


class Collector:
    """Iterates a receiver in a task (``async for``) and keeps what it got.

    ``delay`` sleeps after each event (a slow consumer); ``stop_at`` ends the loop after the event
    at that global position and appends ``name`` to ``finish_order``.
    """

    def __init__(
        self,
        receiver: EventStreamReceiver,
        *,
        name: str = "",
        delay: float = 0.0,
        stop_at: int | None = None,
        finish_order: list[str] | None = None,
        on_event: Callable[[StreamEvent], Any] | None = None,
    ) -> None:
        self.receiver = receiver
        self.name = name or receiver.subscription_id
        self.items: list[StreamEvent] = []
        self._delay = delay
        self._stop_at = stop_at
        self._finish_order = finish_order
        self._on_event = on_event
        self._progress = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"collector {self.name}")
        _running.add(self)

    async def _run(self) -> None:
        try:
            async for item in self.receiver:
                self.items.append(item)
                self._progress.set()
                if self._on_event is not None:
                    self._on_event(item)
                if self._delay:
                    await asyncio.sleep(self._delay)
                if self._stop_at is not None and item.global_position >= self._stop_at:
                    break
            if self._finish_order is not None:
                self._finish_order.append(self.name)
        finally:
            self._progress.set()
            _running.discard(self)

    @property
    def positions(self) -> list[int]:
        return [item.global_position for item in self.items]

    @property
    def last(self) -> int:
        return self.items[-1].global_position if self.items else 0

    async def wait_for(self, position: int, timeout: float = 60.0) -> None:
        """Wait until an event at ``position`` or beyond has arrived (fails after ``timeout``)."""
        try:
            async with asyncio.timeout(timeout):
                while self.last < position:
                    if self.task.done():
                        self.task.result()  # raises what ended the iteration, if anything
                        raise AssertionError(
                            f"{self.name}: iteration ended at position {self.last}, "
                            f"waiting for {position}"
                        )
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: still at position {self.last} after {timeout}s, waiting for "
                f"{position} ({len(self.items)} events received; stats {self.receiver.stats()})"
            ) from None

    async def wait_count(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` events have arrived."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.items) < count:
                    if self.task.done():
                        self.task.result()
                        raise AssertionError(
                            f"{self.name}: iteration ended after {len(self.items)} events, "
                            f"waiting for {count}"
                        )
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: {len(self.items)} events after {timeout}s, waiting for {count}"
            ) from None

    async def finished(self, timeout: float = 30.0) -> None:
        """Wait for the iteration to end; re-raise whatever ended it abnormally."""
        async with asyncio.timeout(timeout):
            await self.task

    async def cancel(self) -> None:
        """Stop the task (test clean-up)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def cancel_all(collectors: Iterable[Collector]) -> None:
    for collector in collectors:
        await collector.cancel()


async def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float = 60.0, step: float = 0.01
) -> None:
    """Poll ``predicate`` until true; fail (not hang) after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - polls plain state, bounded
                await asyncio.sleep(step)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def positions_and_ids(dsn: str, schema: str = "eventuali") -> dict[int, Any]:
    """Global position -> event id, read straight from the table."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT global_position, event_id FROM {schema}.events")
        return {int(row["global_position"]): row["event_id"] for row in rows}
    finally:
        await conn.close()


async def head_position(dsn: str, schema: str = "eventuali") -> int:
    """The global sequence's position, read straight from the table."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT position FROM {schema}.global_sequence"))
    finally:
        await conn.close()
