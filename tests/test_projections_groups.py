"""Consumer groups keep their checkpoints per partition, so a group resized between runs
resumes where it stopped: nothing orphaned, nothing handled twice (issue 18 item 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from helpers.streaming_domain import tickers

from eventuali_pg import (
    CheckpointStore,
    ConsumerGroup,
    Event,
    EventStore,
    InvalidInputError,
    ProjectionRunner,
    TransactionalProjection,
)

WAIT = 60.0


class Applied(TransactionalProjection):
    """One row per event: a second application of an event fails the primary key."""

    def __init__(self, worker: str) -> None:
        self.worker = worker

    async def handle_event(self, event: Event, connection: Any) -> None:
        await connection.execute(
            "INSERT INTO group_applied (event_id, aggregate_id, version, worker) "
            "VALUES ($1, $2, $3, $4)",
            event.event_id,
            event.aggregate_id,
            event.aggregate_version,
            self.worker,
        )


@pytest.fixture
async def applied(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS group_applied (event_id uuid PRIMARY KEY, "
        "aggregate_id text, version int, worker text); TRUNCATE group_applied"
    )
    try:
        yield conn
    finally:
        await conn.close()


async def run_group(store: EventStore, size: int, head: int) -> None:
    runners = [
        ProjectionRunner(
            store,
            Applied(f"{size}:{member}"),
            subscription_id="resized",
            group=ConsumerGroup(size=size, member=member),
            max_attempts=1,
        )
        for member in range(size)
    ]
    for runner in runners:
        await runner.start()
    try:
        for runner in runners:
            await runner.wait_for_position(head, timeout=WAIT)
    finally:
        for runner in runners:
            await runner.stop()
    for runner in runners:
        assert await runner.dead_letters() == []


async def test_a_group_resized_between_runs_resumes_exactly(
    dsn: str, applied: asyncpg.Connection
) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save_all(tickers(40, 3, writer="first"))
        await run_group(store, 2, await store.get_global_position())
        await store.save_all(tickers(40, 3, writer="second"))
        await run_group(store, 3, await store.get_global_position())
        await store.save_all(tickers(40, 2, writer="third"))
        head = await store.get_global_position()
        await run_group(store, 1, head)
        rows = await applied.fetch(
            "SELECT aggregate_id, version FROM group_applied ORDER BY aggregate_id, version"
        )
        assert len(rows) == head == 320  # every event once: the primary key forbids twice
        partitions = ConsumerGroup(size=1, member=0).group_checkpoint_ids("resized")
        stored = await CheckpointStore(store).get_many(partitions)
        assert set(stored.values()) == {head}


def test_group_sizes_are_bounded_by_the_partitions() -> None:
    assert ConsumerGroup(size=16, member=15).owned_partitions == [15]
    assert ConsumerGroup(size=3, member=0).owned_partitions == [0, 3, 6, 9, 12, 15]
    with pytest.raises(InvalidInputError, match="partitions"):
        ConsumerGroup(size=17, member=0)
    assert ConsumerGroup(size=17, member=16, partitions=32).owned_partitions == [16]


async def test_members_of_different_sizes_never_both_apply_an_event(
    dsn: str, applied: asyncpg.Connection
) -> None:
    """Two members of different group sizes running at once (a resize in progress) share
    partitions; the per-partition fences let only one apply each event."""
    async with await EventStore.create(dsn) as store:
        await store.save_all(tickers(30, 4, writer="overlap"))
        head = await store.get_global_position()
        runners = [
            ProjectionRunner(
                store,
                Applied(name),
                subscription_id="overlap",
                group=group,
                max_attempts=1,
            )
            for name, group in (
                ("old", ConsumerGroup(size=1, member=0)),
                ("new", ConsumerGroup(size=2, member=0)),
            )
        ]
        for runner in runners:
            await runner.start()
        try:
            async with asyncio.timeout(WAIT):
                await runners[0].wait_for_position(head)
        finally:
            for runner in runners:
                await runner.stop()
        assert await applied.fetchval("SELECT count(*) FROM group_applied") == head
        for runner in runners:  # never applied twice: no primary-key failure was parked
            assert await runner.dead_letters() == []
