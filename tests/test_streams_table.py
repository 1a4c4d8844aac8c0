"""The ``streams`` table (migration 0003): one row per aggregate with its current version, the
optimistic-concurrency check of every append (issue 18 item 4)."""

from __future__ import annotations

import asyncpg
import pytest
from helpers.streaming_domain import Ticker, tickers

import eventuali_pg
from eventuali_pg import ConcurrencyError, EventStore


@pytest.fixture
def schema(scratch_schema: str) -> str:
    return scratch_schema


async def streams(dsn: str, schema: str) -> dict[str, tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT aggregate_id, aggregate_type, version FROM {schema}.streams"
        )
    finally:
        await conn.close()
    return {r["aggregate_id"]: (r["aggregate_type"], r["version"]) for r in rows}


async def test_every_append_moves_the_stream_row(dsn: str, schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=schema)
    async with await EventStore.create(dsn, schema=schema) as store:
        await store.save_all(tickers(3, 2, writer="a"))
        first = (await store.load_events_from_position(0))[0]
        ticker = await store.load(Ticker, first.aggregate_id)
        assert ticker is not None
        ticker.tick(99)
        await store.save(ticker)
        rows = await streams(dsn, schema)
        assert sorted(version for _, version in rows.values()) == [2, 2, 3]
        assert {kind for kind, _ in rows.values()} == {"Ticker"}
        assert await store.get_aggregate_version(ticker.id) == 3
        stale = Ticker(id=ticker.id, version=2)
        stale.tick(100)
        with pytest.raises(ConcurrencyError) as raised:
            await store.save(stale)
        assert (raised.value.expected_version, raised.value.actual_version) == (2, 3)


async def test_upgrading_an_existing_store_backfills_its_streams(dsn: str, schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=schema)
    async with await EventStore.create(dsn, schema=schema) as store:
        await store.save_all(tickers(4, 3, writer="before"))
        head = await store.get_global_position()
        before = await streams(dsn, schema)
    await eventuali_pg.downgrade(dsn, schema=schema, revision="0002_projections")
    await eventuali_pg.migrate(dsn, schema=schema)
    assert await streams(dsn, schema) == before  # rebuilt from the events, versions kept
    async with await EventStore.create(dsn, schema=schema) as store:
        assert await store.get_global_position() == head  # events and positions untouched
        aggregate_id = next(iter(before))
        ticker = await store.load(Ticker, aggregate_id)
        assert ticker is not None and ticker.version == 3
        ticker.tick(4)
        await store.save(ticker)
        stale = Ticker(id=aggregate_id, version=3)
        stale.tick(5)
        with pytest.raises(ConcurrencyError):
            await store.save(stale)


async def test_iterating_events_pages_through_any_range(dsn: str) -> None:
    async with await EventStore.create(dsn, page_size=7) as store:
        await store.save_all(tickers(5, 10))
        positions = [e.global_position async for e in store.iter_events_from_position(3)]
        assert positions == list(range(4, 51))
        bounded = [
            e.global_position
            async for e in store.iter_events_from_position(0, up_to=20, page_size=3)
        ]
        assert bounded == list(range(1, 21))
        filtered = [
            e.aggregate_type
            async for e in store.iter_events_from_position(0, aggregate_types="Nothing")
        ]
        assert filtered == []
