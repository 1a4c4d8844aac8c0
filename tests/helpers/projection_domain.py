"""Events, aggregates, read-model tables and projections of the projection tests.

Event classes register globally by type name; these names are unique to the projection tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg

from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg.projections import Projection, TransactionalProjection


class ProjTicked(Event, event_type="proj.Ticked"):
    n: int = 0
    poison: bool = False


class ProjTicker(Aggregate):
    aggregate_type = "proj.Ticker"

    ticks: int = 0

    def tick(self, *, poison: bool = False) -> None:
        self.apply(ProjTicked(n=self.ticks + 1, poison=poison))

    def apply_proj_ticked(self, event: ProjTicked) -> None:
        self.ticks = event.n


# -- read model --------------------------------------------------------------------------------

READ_MODEL_DDL = """
DROP TABLE IF EXISTS public.proj_applied, public.proj_counters, public.proj_deliveries;
CREATE TABLE public.proj_applied (
    seq bigserial PRIMARY KEY,
    position bigint NOT NULL UNIQUE,
    aggregate_id text NOT NULL,
    version int NOT NULL,
    worker text NOT NULL
);
CREATE TABLE public.proj_counters (
    aggregate_id text PRIMARY KEY,
    n int NOT NULL,
    last_version int NOT NULL
);
CREATE TABLE public.proj_deliveries (
    seq bigserial PRIMARY KEY,
    position bigint NOT NULL,
    aggregate_id text NOT NULL,
    version int NOT NULL,
    worker text NOT NULL
);
"""


async def create_read_model(dsn: str) -> None:
    """(Re)create the read-model tables, empty."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(READ_MODEL_DDL)
    finally:
        await conn.close()


async def seed(store: EventStore, aggregates: int, rounds: int, prefix: str = "t") -> list[str]:
    """``rounds`` events on each of ``aggregates`` aggregates, interleaved; returns the ids."""
    tickers = [ProjTicker(id=f"{prefix}-{i:04d}") for i in range(aggregates)]
    for _ in range(rounds):
        for ticker in tickers:
            ticker.tick()
        await store.save_all(tickers)
    return [ticker.id for ticker in tickers]


async def append_more(store: EventStore, ids: Sequence[str], rounds: int) -> None:
    """``rounds`` more events on each existing aggregate."""
    tickers = [await store.load(ProjTicker, aggregate_id) for aggregate_id in ids]
    for _ in range(rounds):
        for ticker in tickers:
            assert ticker is not None
            ticker.tick()
        await store.save_all([t for t in tickers if t is not None])


class OrderViolation(Exception):
    """An aggregate's events arrived out of order (would show up as a dead letter)."""


async def apply_exactly_once(conn: Any, event: Event, worker: str) -> None:
    """The exactly-once read model: one row per position, a counter checked for order."""
    assert event.global_position is not None
    await conn.execute(
        "INSERT INTO public.proj_applied (position, aggregate_id, version, worker) "
        "VALUES ($1, $2, $3, $4)",
        event.global_position,
        event.aggregate_id,
        event.aggregate_version,
        worker,
    )
    last = await conn.fetchval(
        "SELECT last_version FROM public.proj_counters WHERE aggregate_id = $1",
        event.aggregate_id,
    )
    if (last or 0) + 1 != event.aggregate_version:
        raise OrderViolation(
            f"{event.aggregate_id}: version {event.aggregate_version} after {last}"
        )
    await conn.execute(
        "INSERT INTO public.proj_counters (aggregate_id, n, last_version) VALUES ($1, 1, $2) "
        "ON CONFLICT (aggregate_id) DO UPDATE SET n = proj_counters.n + 1, last_version = $2",
        event.aggregate_id,
        event.aggregate_version,
    )


class CountingProjection(TransactionalProjection):
    """Exactly-once: writes the read model in the runner's transaction; may sleep per batch
    (inside the transaction) so that a kill lands in the middle of one."""

    def __init__(self, worker: str = "w", slow: float = 0.0) -> None:
        self.worker = worker
        self.slow = slow

    async def handle_event(self, event: Event, connection: Any) -> None:
        await apply_exactly_once(connection, event, self.worker)

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        for event in events:
            await self.handle_event(event, connection)
        if self.slow:
            await asyncio.sleep(self.slow)

    async def reset(self, connection: Any) -> None:
        await connection.execute("TRUNCATE public.proj_applied, public.proj_counters")


class DeliveryProjection(Projection):
    """At-least-once: every delivery is written at once, outside the runner's transactions, as
    an effect on another system would be."""

    def __init__(self, dsn: str, worker: str = "w", slow: float = 0.0) -> None:
        self.dsn = dsn
        self.worker = worker
        self.slow = slow
        self.connection: Any = None

    async def _conn(self) -> Any:
        if self.connection is None:
            self.connection = await asyncpg.connect(self.dsn)
        return self.connection

    async def handle_event(self, event: Event) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[Event]) -> None:
        conn = await self._conn()
        await conn.executemany(
            "INSERT INTO public.proj_deliveries (position, aggregate_id, version, worker) "
            "VALUES ($1, $2, $3, $4)",
            [(e.global_position, e.aggregate_id, e.aggregate_version, self.worker) for e in events],
        )
        if self.slow:
            await asyncio.sleep(self.slow)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
