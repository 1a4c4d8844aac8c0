"""The parameters of a coalesced append: every unit's events keep their own column values.

The appender flattens the units' columns in three ways (one unit as it is; many small units
one column at a time; large units by extension) and sends a column holding only NULLs as one
NULL. The saves here are queued behind one held in flight (the sequence row is held from
another session), so they share one statement: a fact of ordering, not of timing.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from helpers.blocking import WAIT, holding_sequence, until_an_append_waits
from helpers.streaming_domain import Ticked, Ticker

from eventuali_pg import EventStore

Ids = tuple[str | None, str | None, str | None]
#: (causation_id, correlation_id, user_id) of events, cycled; empty strings are values.
MIXED: list[Ids] = [(None, None, None), ("cause", None, ""), (None, "corr", "user"), ("", "", None)]
NULLS: list[Ids] = [(None, None, None)]
EMPTY: list[Ids] = [("", None, ""), (None, None, None)]  # a column of empty strings and NULLs
Row = tuple[str, int, str | None, str | None, str | None, int]


def ticker(aggregate_id: str, events: int, ids: list[Ids], want: list[Row]) -> Ticker:
    """A new ticker with ``events`` events taking ``ids`` in turn; their rows go to ``want``."""
    aggregate = Ticker(id=aggregate_id)
    for n in range(events):
        causation, correlation, user = ids[n % len(ids)]
        aggregate.apply(
            Ticked(n=n, causation_id=causation, correlation_id=correlation, user_id=user)
        )
        want.append((aggregate_id, n + 1, causation, correlation, user, n))
    return aggregate


@pytest.mark.parametrize(
    ("events", "ids"),
    [(1, NULLS), (1, MIXED), (1, EMPTY), (7, MIXED), (3, NULLS), (5, EMPTY)],
    ids=["one-event-nulls", "one-event-mixed", "one-event-empty", "large-mixed", "small-nulls",
         "large-empty"],
)
async def test_a_coalesced_group_stores_each_units_own_values(
    dsn: str, events: int, ids: list[Ids]
) -> None:
    want: list[Row] = []
    first = ticker("first", 1, MIXED[1:2], want)
    queued = [
        ticker(f"t{i}", events, ids[i % len(ids) :] + ids[: i % len(ids)], want) for i in range(9)
    ]
    pair = [ticker("pair-a", 2, MIXED, want), ticker("pair-b", 5, NULLS, want)]
    async with await EventStore.create(dsn) as store:
        async with holding_sequence(dsn) as watcher:
            task = asyncio.create_task(store.save(first))
            await until_an_append_waits(watcher)
            tasks = [asyncio.create_task(store.save(aggregate)) for aggregate in queued]
            tasks.append(asyncio.create_task(store.save_all(pair)))
            await asyncio.sleep(0)  # every save is queued behind the first
        async with asyncio.timeout(WAIT):
            await asyncio.gather(task, *tasks)
        assert store._writer.groups == 2  # the first save, then one group of all the others

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT global_position, aggregate_id, aggregate_version, causation_id,"
            " correlation_id, user_id, (payload->>'n')::int AS n FROM eventuali.events"
            " ORDER BY global_position"
        )
        versions = {
            row["aggregate_id"]: row["version"]
            for row in await conn.fetch("SELECT aggregate_id, version FROM eventuali.streams")
        }
    finally:
        await conn.close()
    assert [row["global_position"] for row in rows] == list(range(1, len(want) + 1))
    assert sorted(tuple(row)[1:] for row in rows) == sorted(want)
    assert versions == {aggregate.id: aggregate.version for aggregate in [first, *queued, *pair]}
    assert all(not aggregate.get_uncommitted_events() for aggregate in [first, *queued, *pair])
