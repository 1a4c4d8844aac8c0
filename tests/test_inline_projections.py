"""Inline projections (issue 9 item 3): a TransactionalProjection run inside the transaction of
every save carrying matching events, so its read model is never behind or ahead of them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from helpers.streaming_domain import Ticker, tickers

from eventuali_pg import Event, EventStore, TransactionalProjection

WAIT = 60.0


class HandlerRefused(Exception):
    pass


class TickCounts(TransactionalProjection):
    """Counts each aggregate's events; refuses aggregates whose id starts with "bad-"."""

    def __init__(self) -> None:
        self.saw_positions: set[int | None] = set()

    async def handle_event(self, event: Event, connection: Any) -> None:
        await self.handle_batch([event], connection)

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        for event in events:
            self.saw_positions.add(event.global_position)
            if event.aggregate_id.startswith("bad-"):  # never a generated uuid4 id
                raise HandlerRefused(f"refused {event.aggregate_id}")
        await connection.executemany(
            "INSERT INTO inline_counts (aggregate_id, events) VALUES ($1, 1) "
            "ON CONFLICT (aggregate_id) DO UPDATE SET events = inline_counts.events + 1",
            [(event.aggregate_id,) for event in events],
        )


@pytest.fixture
async def counts(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS inline_counts (aggregate_id text PRIMARY KEY, events int); "
        "TRUNCATE inline_counts"
    )
    try:
        yield conn
    finally:
        await conn.close()


async def read_model(conn: asyncpg.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in await conn.fetch("SELECT aggregate_id, events FROM inline_counts")}


async def from_events(conn: asyncpg.Connection) -> dict[str, int]:
    return {
        r[0]: r[1]
        for r in await conn.fetch(
            "SELECT aggregate_id, count(*)::int FROM eventuali.events GROUP BY aggregate_id"
        )
    }


def ticker(aggregate_id: str, events: int = 1) -> Ticker:
    aggregate = Ticker(id=aggregate_id)
    for n in range(events):
        aggregate.tick(n)
    return aggregate


async def test_read_model_equals_the_events_after_thousands_of_mixed_saves(
    dsn: str, counts: asyncpg.Connection
) -> None:
    rng = random.Random(3)
    projection = TickCounts()
    async with await EventStore.create(
        dsn, inline_projections=[projection], max_batch_wait=0.001
    ) as store:

        async def plain(name: str) -> None:
            for n in range(40):
                await store.save_all(tickers(rng.randint(1, 3), 3, writer=f"{name}-{n}"))

        async def transactional(name: str) -> None:
            for n in range(25):
                async with store.transaction() as tx:
                    await tx.save(ticker(f"{name}-{n}", rng.randint(1, 4)))

        async def caller_connection(name: str) -> None:
            conn = await asyncpg.connect(dsn)
            try:
                for n in range(25):
                    async with conn.transaction():
                        await store.save(ticker(f"{name}-{n}", 2), connection=conn)
            finally:
                await conn.close()

        async with asyncio.timeout(WAIT):
            await asyncio.gather(
                *(plain(f"p{n}") for n in range(4)),
                *(transactional(f"t{n}") for n in range(2)),
                caller_connection("c"),
            )
        expected = await from_events(counts)
        assert sum(expected.values()) > 1000
        assert await read_model(counts) == expected
        positions = [r[0] for r in await counts.fetch(
            "SELECT global_position FROM eventuali.events ORDER BY 1")]
        assert positions == list(range(1, len(positions) + 1))
        assert projection.saw_positions == {None}  # handlers run before positions exist


async def test_a_failing_handler_rolls_back_only_its_own_save(
    dsn: str, counts: asyncpg.Connection
) -> None:
    async with await EventStore.create(
        dsn, inline_projections=[TickCounts()], max_batch_wait=0.02
    ) as store:
        aggregates = [ticker(f"good-{n}", 2) for n in range(9)] + [ticker("bad-1", 2)]
        random.Random(5).shuffle(aggregates)
        results = await asyncio.gather(
            *(store.save(a) for a in aggregates), return_exceptions=True
        )
        failed = {
            a.id: r
            for a, r in zip(aggregates, results, strict=True)
            if isinstance(r, BaseException)
        }
        assert list(failed) == ["bad-1"] and isinstance(failed["bad-1"], HandlerRefused)
        bad = next(a for a in aggregates if a.id == "bad-1")
        assert bad.has_uncommitted_events()
        model = await read_model(counts)
        assert model == await from_events(counts) and "bad-1" not in model and len(model) == 9


async def test_a_failing_handler_in_the_callers_transaction_raises_at_save(
    dsn: str, counts: asyncpg.Connection
) -> None:
    async with await EventStore.create(dsn) as store:
        store.add_inline_projection(TickCounts(), aggregate_type_filter="Ticker")
        async with store.transaction() as tx:
            with pytest.raises(HandlerRefused):
                await tx.save(ticker("bad-in-tx"))
            await tx.save(ticker("fine-in-tx"))  # the transaction goes on
        assert await read_model(counts) == {"fine-in-tx": 1} == await from_events(counts)
