"""A young store analyzes ``streams`` as its head crosses the thresholds of
:mod:`eventuali_pg.store.statistics`, so that cached generic plans of the append statement are
rebuilt with index lookups instead of scanning a table that was empty when they were made."""

from __future__ import annotations

import asyncpg
from helpers.roles import made_roles
from helpers.streaming_domain import Ticker

from eventuali_pg import EventStore
from eventuali_pg.store.statistics import THRESHOLDS, crossed


def test_a_threshold_counts_once_from_below() -> None:
    first = THRESHOLDS[0]
    assert crossed(first - 1, first)
    assert crossed(0, first + 5)
    assert not crossed(first, first + 1)
    assert not crossed(0, first - 1)
    assert crossed(THRESHOLDS[-1] - 1, 10 * THRESHOLDS[-1])
    assert not crossed(THRESHOLDS[-1], 10 * THRESHOLDS[-1])


async def analyzed(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval(
            "SELECT analyze_count FROM pg_stat_user_tables "
            "WHERE schemaname = 'eventuali' AND relname = 'streams'"
        )
        return int(count)
    finally:
        await conn.close()


def tickers(start: int, count: int) -> list[Ticker]:
    made = []
    for n in range(start, start + count):
        ticker = Ticker(id=f"t-{n}")
        ticker.tick(1)
        made.append(ticker)
    return made


async def test_streams_is_analyzed_when_the_head_crosses_a_threshold(dsn: str) -> None:
    first = THRESHOLDS[0]
    async with await EventStore.create(dsn) as store:
        before = await analyzed(dsn)
        await store.save_all(tickers(0, first - 1))
        assert await analyzed(dsn) == before
        await store.save_all(tickers(first - 1, 1))  # the head reaches the threshold
        assert await analyzed(dsn) == before + 1
        await store.save_all(tickers(first, 10))
        assert await analyzed(dsn) == before + 1


async def test_a_role_that_cannot_analyze_still_saves(dsn: str) -> None:
    # ANALYZE by a role that does not own the table is a server warning, not an error.
    first = THRESHOLDS[0]
    async with made_roles(dsn) as roles, await EventStore.create(roles.writer_dsn) as store:
        before = await analyzed(dsn)
        assert await store.save_all(tickers(0, first + 1)) == first + 1
        assert await analyzed(dsn) == before
        ticker = Ticker(id="after")
        ticker.tick(1)
        assert await store.save(ticker) == first + 2
