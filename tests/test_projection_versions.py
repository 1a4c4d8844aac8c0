"""Projection versions (issue 10 item 3): version 2 rebuilds its own read model from position 0
while version 1 keeps running and serving, knows which events are a replay, and takes over
with nothing missed; version 1 is then retired."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import asyncpg
import pytest
from helpers.cli_run import run_cli
from helpers.streaming_domain import tickers

from eventuali_pg import ConfigurationError, Event, EventStore, TransactionalProjection
from eventuali_pg.projections import (
    CheckpointStore,
    ProjectionRunner,
    activate,
    active_version,
    retire,
    versions,
)

WAIT = 120.0


class CountsV1(TransactionalProjection):
    async def handle_batch(self, events: Any, connection: Any) -> None:
        await connection.executemany(
            "INSERT INTO versions_v1 (event_id) VALUES ($1)", [(e.event_id,) for e in events]
        )

    async def handle_event(self, event: Event, connection: Any) -> None:
        await self.handle_batch([event], connection)


class CountsV2(TransactionalProjection):
    version: ClassVar[int] = 2  # type: ignore[misc]

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool]] = []

    async def handle_batch(self, events: Any, connection: Any) -> None:
        self.seen += [(e.global_position, self.replaying) for e in events]
        await connection.executemany(
            "INSERT INTO versions_v2 (event_id, replayed) VALUES ($1, $2)",
            [(e.event_id, self.replaying) for e in events],
        )

    async def handle_event(self, event: Event, connection: Any) -> None:
        await self.handle_batch([event], connection)


@pytest.fixture
async def tables(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS versions_v1 (event_id uuid PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS versions_v2 (event_id uuid PRIMARY KEY, replayed bool);"
        "TRUNCATE versions_v1, versions_v2"
    )
    try:
        yield conn
    finally:
        await conn.close()


async def test_version_2_rebuilds_side_by_side_and_takes_over(
    dsn: str, tables: asyncpg.Connection
) -> None:
    async with await EventStore.create(dsn) as store:
        v1 = ProjectionRunner(store, CountsV1(), subscription_id="orders", batch_size=500)
        await v1.start()
        for _ in range(10):
            await store.save_all(tickers(50, 21, writer="history"))  # 10,500 events
        first_head = await store.get_global_position()
        await v1.wait_for_position(first_head, timeout=WAIT)
        assert await active_version(store, "orders") == 1

        projection = CountsV2()
        v2 = ProjectionRunner(store, projection, subscription_id="orders", batch_size=500)
        assert v2.subscription_id == "orders@v2" and v2.version == 2
        await v2.start()

        async def write_meanwhile() -> None:
            for n in range(20):
                await store.save_all(tickers(5, 2, writer=f"live-{n}"))
                await asyncio.sleep(0)

        await write_meanwhile()  # v1 keeps serving while v2 replays
        head = await store.get_global_position()
        await v1.wait_for_position(head, timeout=WAIT)
        assert await tables.fetchval("SELECT count(*) FROM versions_v1") == head
        await v2.wait_for_position(head, timeout=WAIT)
        # both read models complete, each event once
        assert await tables.fetchval("SELECT count(*) FROM versions_v2") == head
        (recorded_v1, recorded_v2) = await versions(store, "orders")
        assert (recorded_v1.version, recorded_v1.active) == (1, True)
        assert (recorded_v2.version, recorded_v2.active) == (2, False)
        assert recorded_v2.replay_until >= first_head and recorded_v2.replayed
        # the replay flag: every event up to the head at v2's first start, and only those
        replayed = {position for position, flag in projection.seen if flag}
        assert replayed == set(range(1, recorded_v2.replay_until + 1))
        assert all(not flag for p, flag in projection.seen if p > recorded_v2.replay_until)
        assert v2.stats().replaying is False

        status = await run_cli("status", "--dsn", dsn, "--json")
        report = json.loads(status.stdout)
        shown = {(r["version"], r["active"], r["lag"]) for r in report["projection_versions"]}
        assert shown == {(1, True, 0), (2, False, 0)}

        await activate(store, "orders", 2)
        assert await active_version(store, "orders") == 2
        with pytest.raises(ConfigurationError, match="active"):
            await retire(store, "orders", 2)
        await v1.stop()
        await retire(store, "orders", 1)
        assert [v.version for v in await versions(store, "orders")] == [2]
        assert await CheckpointStore(store).get("orders") is None
        await store.save_all(tickers(3, 1, writer="after"))
        await v2.wait_for_position(await store.get_global_position(), timeout=WAIT)
        await v2.stop()
        assert await tables.fetchval("SELECT count(*) FROM versions_v2") == head + 3


async def test_a_version_still_replaying_is_not_activated(
    dsn: str, tables: asyncpg.Connection
) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save_all(tickers(10, 5))
        v1 = ProjectionRunner(store, CountsV1(), subscription_id="early")
        async with v1:
            await v1.wait_for_position(50, timeout=WAIT)
        v2 = ProjectionRunner(store, CountsV2(), subscription_id="early")
        async with v2:
            await v2.wait_for_position(50, timeout=WAIT)
        await CheckpointStore(store).reset("early@v2", 0)  # as if it had not caught up yet
        with pytest.raises(ConfigurationError, match="still replaying"):
            await activate(store, "early", 2)
        await activate(store, "early", 2, force=True)
        assert await active_version(store, "early") == 2


class SkipsReplay(TransactionalProjection):
    skip_replay: ClassVar[bool] = True  # type: ignore[misc]

    def __init__(self) -> None:
        self.handled: list[int] = []

    async def handle_event(self, event: Event, connection: Any) -> None:
        assert event.global_position is not None
        self.handled.append(event.global_position)


async def test_a_projection_can_skip_the_replay(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save_all(tickers(4, 5))  # 20 events before it first starts
        projection = SkipsReplay()
        runner = ProjectionRunner(store, projection, subscription_id="mailer")
        async with runner:
            await runner.wait_for_position(20, timeout=WAIT)
            await store.save_all(tickers(1, 3, writer="new"))
            await runner.wait_for_position(23, timeout=WAIT)
        assert projection.handled == [21, 22, 23]
