"""Read replicas: catch-up from a real streaming replica, hand-over to the primary, fallback.

The suite starts its own primary and hot standby (``helpers.replication``) from PostgreSQL's
binaries; both are stopped and deleted when the module ends, whatever happened. Without
binaries the module is skipped, unless ``EVENTUALI_PG_REQUIRE_REPLICA=1`` (``.ci/run``) makes
that a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import asyncpg
import pytest
from helpers.cli_run import run_cli
from helpers.domain import Counter
from helpers.replication import REQUIRE_ENV, ReplicaPair, find_bin_dir

from eventuali_pg import EventStore, EventStreamer, Subscription, migrate
from eventuali_pg.models import Event
from eventuali_pg.projections import ProjectionRunner, TransactionalProjection

pytestmark = pytest.mark.slow

WRITERS = 4


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup) to start a replica"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires the replica tests")
        pytest.skip(message)
    servers = ReplicaPair(bin_dir)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def _fetchval(dsn: str, query: str) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


async def _head(dsn: str, schema: str) -> int:
    return int(await _fetchval(dsn, f"SELECT position FROM {schema}.global_sequence") or 0)


async def _until_replayed(pair: ReplicaPair, schema: str) -> None:
    """Wait until the replica shows everything the primary has committed in ``schema``."""
    target = await _head(pair.primary_dsn, schema)
    async with asyncio.timeout(60):
        while True:
            try:
                if await _head(pair.replica_dsn, schema) >= target:
                    return
            except asyncpg.UndefinedTableError:
                pass  # the migration is not replayed yet
            await asyncio.sleep(0.05)


@pytest.fixture
async def schema(pair: ReplicaPair) -> AsyncIterator[str]:
    """A freshly migrated schema of its own on the primary, replayed on the replica."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    await migrate(pair.primary_dsn, schema=name)
    await _until_replayed(pair, name)
    yield name


async def _fill(dsn: str, schema: str, saves: int, per_save: int = 3) -> None:
    async with await EventStore.create(dsn, schema=schema, pool_max_size=2) as store:
        for _ in range(saves):
            counter = Counter(id=str(uuid.uuid4()))
            for step in range(per_save):
                counter.increment(step + 1)
            await store.save(counter)


async def _write(store: EventStore, saves: int, stop: asyncio.Event) -> None:
    """One writer: ``saves`` saves of 1-3 events, on as many aggregates."""
    for number in range(saves):
        if stop.is_set():
            return
        counter = Counter(id=str(uuid.uuid4()))
        for step in range(1 + number % 3):
            counter.increment(step + 1)
        if number % 5 == 0:
            counter.rename(f"c{number}")
        await store.save(counter)


async def _collect(receiver: Any) -> list[int]:
    """Every position the receiver delivers until it is unsubscribed."""
    return [item.global_position async for item in receiver]


async def _pause_replay(pair: ReplicaPair) -> None:
    await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_pause()")
    async with asyncio.timeout(30):
        state = "pause requested"
        while state != "paused":
            await asyncio.sleep(0.05)
            state = await _fetchval(pair.replica_dsn, "SELECT pg_get_wal_replay_pause_state()")


class PositionsTable(TransactionalProjection):
    """Records every handled position in a table (a duplicate fails on its primary key)."""

    def __init__(self, table: str) -> None:
        self.table = table

    async def handle_event(self, event: Event, connection: Any) -> None:
        await connection.execute(
            f"INSERT INTO {self.table} (position) VALUES ($1)", event.global_position
        )

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        await connection.executemany(
            f"INSERT INTO {self.table} (position) VALUES ($1)",
            [(event.global_position,) for event in events],
        )


async def test_catch_up_from_a_paused_replica_hands_over_to_the_primary(
    pair: ReplicaPair, schema: str
) -> None:
    # History on both servers, then replay paused: the replica stays at this head while four
    # writers go on appending to the primary.
    await _fill(pair.primary_dsn, schema, saves=600)
    await _until_replayed(pair, schema)
    history = await _head(pair.primary_dsn, schema)
    table = f"{schema}.seen"
    await _fetchval(
        pair.primary_dsn,
        f"CREATE TABLE {table} (n bigserial PRIMARY KEY, position bigint NOT NULL UNIQUE)",
    )
    await _until_replayed(pair, schema)
    await _pause_replay(pair)
    paused = True
    # Committed on the primary only: the catch-up must cross the replica's head.
    await _fill(pair.primary_dsn, schema, saves=100)

    streamer = EventStreamer(capacity=200)
    store = await EventStore.create(
        pair.primary_dsn,
        schema=schema,
        streamer=streamer,
        replica_dsn=[pair.replica_dsn],
        replica_min_distance=0,
        page_size=200,
    )
    stop = asyncio.Event()
    try:
        writers = [
            asyncio.create_task(_write(store, 150, stop), name=f"writer {n}")
            for n in range(WRITERS)
        ]
        everything = await streamer.subscribe(Subscription(id="everything"), from_position=0)
        renamed = await streamer.subscribe(
            Subscription(id="renamed", event_type_filter="counter.renamed"), from_position=0
        )
        runner = ProjectionRunner(
            store, PositionsTable(table), subscription_id="seen", batch_size=50
        )
        await runner.start()
        readers = [
            asyncio.create_task(_collect(everything), name="everything"),
            asyncio.create_task(_collect(renamed), name="renamed"),
        ]
        # Replay resumes while the writers are still at it: later catch-up reads (the
        # receivers overflow their small buffers) see a moving replica.
        async with asyncio.timeout(120):
            while store.replica_stats()[0].reads < 3:  # noqa: ASYNC110 (figures: poll them)
                await asyncio.sleep(0.05)
        await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_resume()")
        paused = False
        await asyncio.gather(*writers)
        head = await store.get_global_position()
        await runner.wait_for_checkpoint(head, timeout=120)
        await runner.stop()
        expected_renamed = [
            e.global_position
            for e in await store.load_events_from_position(0, event_types="counter.renamed")
        ]
        async with asyncio.timeout(120):
            while True:
                if (
                    everything.stats().last_position >= head
                    and renamed.stats().last_position >= expected_renamed[-1]
                ):
                    break
                await asyncio.sleep(0.05)
        await streamer.unsubscribe("everything")
        await streamer.unsubscribe("renamed")
        positions, renamed_positions = await asyncio.gather(*readers)

        assert head > history
        assert positions == list(range(1, head + 1))
        assert renamed_positions == expected_renamed
        seen = await _fetchval(
            pair.primary_dsn, f"SELECT array_agg(position ORDER BY n) FROM {table}"
        )
        assert list(seen) == list(range(1, head + 1))
        stats = store.replica_stats()[0]
        assert stats.reads >= 3 and stats.failures == 0
        assert store._replicas is not None and store._replicas.handovers >= 1
    finally:
        stop.set()
        if paused:
            await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_resume()")
        await store.close()


async def test_reads_match_the_primary_under_lag(pair: ReplicaPair, schema: str) -> None:
    await _fill(pair.primary_dsn, schema, saves=100)
    await _until_replayed(pair, schema)
    await _pause_replay(pair)
    try:
        await _fill(pair.primary_dsn, schema, saves=50)
        async with await EventStore.create(
            pair.primary_dsn, schema=schema, replica_dsn=pair.replica_dsn, replica_min_distance=0
        ) as store:
            lag = (await store.check_replicas())[0]
            assert lag.head == 300 and lag.lag == 150 and lag.available
            report = await store.health()
            assert report.healthy, report.reasons  # a lagging replica is reported, not unhealthy
            assert [(r.head, r.lag) for r in report.replicas] == [(300, 150)]
            assert report.to_dict()["replicas"][0]["lag"] == 150
            for position, limit, up_to, types in [
                (0, None, None, None),
                (0, 100, None, None),
                (250, 100, None, None),
                (290, 20, 305, None),
                (10, 7, None, "Incremented"),
                (0, None, 420, "Incremented"),
                (299, None, None, None),
            ]:
                via_replica = await store.load_events_from_position(
                    position, limit, up_to=up_to, event_types=types, replica=True
                )
                direct = await store.load_events_from_position(
                    position, limit, up_to=up_to, event_types=types
                )
                assert [e.event_id for e in via_replica] == [e.event_id for e in direct]
            iterated = [
                e.global_position
                async for e in store.iter_events_from_position(0, page_size=64, replica=True)
            ]
            assert iterated == list(range(1, 451))
            assert store.replica_stats()[0].reads >= 8
    finally:
        await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_resume()")


async def test_a_replica_too_far_behind_is_not_used(pair: ReplicaPair, schema: str) -> None:
    await _pause_replay(pair)
    try:
        await _fill(pair.primary_dsn, schema, saves=40)
        async with await EventStore.create(
            pair.primary_dsn,
            schema=schema,
            replica_dsn=pair.replica_dsn,
            replica_min_distance=0,
            replica_max_lag=50,
            replica_retry_interval=60,
        ) as store:
            events = await store.load_events_from_position(0, replica=True)
            assert [e.global_position for e in events] == list(range(1, 121))
            stats = store.replica_stats()[0]
            assert stats.lag == 120 and stats.failures == 0 and stats.reads == 1
            assert stats.last_error is not None and "behind" in stats.last_error
    finally:
        await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_resume()")


async def test_replica_stopped_mid_catch_up_delivery_continues(
    pair: ReplicaPair, schema: str
) -> None:
    await _fill(pair.primary_dsn, schema, saves=1000)
    await _until_replayed(pair, schema)
    head = await _head(pair.primary_dsn, schema)
    streamer = EventStreamer(capacity=100)
    store = await EventStore.create(
        pair.primary_dsn,
        schema=schema,
        streamer=streamer,
        replica_dsn=pair.replica_dsn,
        replica_min_distance=0,
    )
    try:
        receiver = await streamer.subscribe(Subscription(id="slow"), from_position=0)
        positions: list[int] = []
        async for item in receiver:
            positions.append(item.global_position)
            if len(positions) == 500:
                assert store.replica_stats()[0].reads >= 1
                await asyncio.to_thread(pair.stop_replica, "immediate")
            if item.global_position == head:
                break
        assert positions == list(range(1, head + 1))
        stats = store.replica_stats()[0]
        assert stats.failures >= 1 and stats.last_error is not None
    finally:
        await store.close()
        if not pair.replica_running:
            await asyncio.to_thread(pair.start_replica)


async def test_cli_status_shows_replica_lag_and_events_read_through_it(
    pair: ReplicaPair, schema: str
) -> None:
    await _fill(pair.primary_dsn, schema, saves=400)  # 1200 events: far enough for a replica
    await _until_replayed(pair, schema)
    await _pause_replay(pair)
    try:
        # 1200 more on the primary only: a read from 1190 is far behind the primary's head,
        # so it starts on the replica and crosses its head.
        await _fill(pair.primary_dsn, schema, saves=400)
        status = await run_cli(
            "status", "--dsn", pair.primary_dsn, "--schema", schema, "--json",
            "--replica-dsn", pair.replica_dsn, "--replica-dsn", "postgresql://postgres@127.0.0.1:1/x",
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        replicas = status.json()["replicas"]
        assert replicas[0]["head"] == 1200 and replicas[0]["lag"] == 1200
        assert replicas[0]["standby"] is True and replicas[0]["error"] is None
        assert replicas[1]["head"] is None and replicas[1]["error"]
        text = await run_cli(
            "status", "--dsn", pair.primary_dsn, "--schema", schema,
            "--replica-dsn", pair.replica_dsn,
        )  # fmt: skip
        assert "lag 1200 events" in text.stdout

        for replica in (pair.replica_dsn, "postgresql://postgres@127.0.0.1:1/x"):
            events = await run_cli(
                "events", "--dsn", pair.primary_dsn, "--schema", schema, "--json",
                "--from", "1190", "--limit", "20", "--replica-dsn", replica,
            )  # fmt: skip
            assert events.returncode == 0, events.stderr
            positions = [row["global_position"] for row in events.json_lines()]
            assert positions == list(range(1191, 1211))
    finally:
        await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_resume()")
