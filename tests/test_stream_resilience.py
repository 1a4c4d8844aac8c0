"""Torture tests of live delivery (DESIGN.md C3, C4, C5): catch-up racing concurrent writers, a
killed LISTEN connection, a restarted server, slow and fast consumers with a tiny buffer.

Every test asserts exact outcomes (positions received, once each, in order), never durations;
timeouts only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from _server import EmbeddedServer
from helpers.streaming_domain import (
    Collector,
    Ticked,
    cancel_all,
    cancel_leftover_collectors,
    positions_and_ids,
    tickers,
    wait_until,
)

from eventuali_pg import (
    ConcurrencyError,
    DatabaseUnavailableError,
    EventStore,
    EventStreamer,
    FeedStats,
    Subscription,
)
from eventuali_pg.stream.receiver import MIN_CATCH_UP_PAGE

pytestmark = pytest.mark.slow

WAIT = 90.0  # generous bound on any single wait: a failure, never a measurement


@pytest.fixture(autouse=True)
async def _no_leftover_collectors() -> AsyncIterator[None]:
    yield
    await cancel_leftover_collectors()


def assert_exact(collector: Collector, start: int, end: int) -> None:
    """The collector got every position in (start, end], once each, in order, and nothing else."""
    positions = collector.positions
    expected = list(range(start + 1, end + 1))
    if positions != expected:
        seen: set[int] = set()
        repeated = sorted({p for p in positions if p in seen or seen.add(p)})  # type: ignore[func-returns-value]
        missing = sorted(set(expected) - set(positions))
        disorder = next(
            (i for i in range(1, len(positions)) if positions[i] <= positions[i - 1]), None
        )
        raise AssertionError(
            f"{collector.name}: {len(positions)} events, expected {len(expected)} "
            f"({start + 1}..{end}); missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
            f"repeated {repeated[:10]}, first out of order at index {disorder}"
        )


def assert_each_writer_in_order(collector: Collector) -> None:
    """Each writer numbers its events; one writer's events must arrive in its own order."""
    last: dict[str, int] = {}
    for item in collector.items:
        event = item.event
        assert isinstance(event, Ticked)
        assert event.n > last.get(event.writer, -1), (collector.name, event.writer, event.n)
        last[event.writer] = event.n


# -- catch-up hand-over racing concurrent writers ----------------------------------------------


async def test_catch_up_hand_over_races_eight_concurrent_writers(dsn: str) -> None:
    writers, saves, aggregates, events_each = 8, 125, 4, 5
    per_save = aggregates * events_each
    total = writers * saves * per_save
    assert total >= 20_000

    big, small = EventStreamer(), EventStreamer(capacity=64)
    async with (
        await EventStore.create(dsn, streamer=big, pool_max_size=12) as store,
        await EventStore.create(dsn, pool_max_size=6) as other,
    ):
        await store.attach_streamer(small)
        collectors = [
            Collector(await big.subscribe(Subscription(id="live-big")), name="live-big"),
            Collector(await small.subscribe(Subscription(id="live-small")), name="live-small"),
        ]
        starts = {"live-big": 0, "live-small": 0}

        async def write(k: int) -> None:
            # half the writers save through the streaming store, half through another store
            target = store if k % 2 else other
            for i in range(saves):
                await target.save_all(
                    tickers(aggregates, events_each, writer=f"w{k}", start=i * per_save)
                )

        tasks = [asyncio.create_task(write(k)) for k in range(writers)]
        try:
            await wait_until(lambda: big.stats().global_position >= total // 10, "first events")
            assert not all(t.done() for t in tasks)
            for streamer, name in ((big, "zero-big"), (small, "zero-small")):
                receiver = await streamer.subscribe(Subscription(id=name, from_position=0))
                collectors.append(Collector(receiver, name=name))
                starts[name] = 0

            await wait_until(lambda: big.stats().global_position >= total * 4 // 10, "the middle")
            head = await store.get_global_position()
            # from the middle of the history, and from the store's head (possibly ahead of what
            # the streamer has published so far), while the writers keep going
            for streamer, name, start in (
                (big, "mid-big", head // 2),
                (small, "mid-small", head),
                (big, "head-big", head),
            ):
                receiver = await streamer.subscribe(Subscription(id=name), from_position=start)
                collectors.append(Collector(receiver, name=name))
                starts[name] = start
            assert not all(t.done() for t in tasks), "the writers finished too early to race"
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        assert await store.get_global_position() == total
        for collector in collectors:
            await collector.wait_for(total, timeout=WAIT)
        for collector in collectors:
            assert_exact(collector, starts[collector.name], total)
            assert_each_writer_in_order(collector)
            assert not collector.task.done()
        ids = await positions_and_ids(dsn)
        zero = next(c for c in collectors if c.name == "zero-small")
        assert [i.event.event_id for i in zero.items] == [ids[p] for p in range(1, total + 1)]
        assert small.stats().duplicates_ignored == 0 and big.stats().duplicates_ignored == 0
        await cancel_all(collectors)


# -- a killed LISTEN connection ------------------------------------------------------------------


async def test_killed_listen_connection_loses_and_repeats_nothing(
    dsn: str, pg_admin_dsn: str
) -> None:
    kills = 10
    streamer = EventStreamer(capacity=32)
    # Poll once an hour and save nothing through this store: NOTIFY and the catch-up that
    # follows each reconnect are the only ways events can arrive.
    async with (
        await EventStore.create(
            dsn,
            streamer=streamer,
            poll_interval=3600,
            heartbeat_interval=0.2,
            heartbeat_timeout=1.0,
        ) as store,
        await EventStore.create(dsn, pool_max_size=2) as writer,
    ):
        live = Collector(await streamer.subscribe(Subscription(id="live")), name="live")
        collectors = [live]
        running = asyncio.Event()
        stop = asyncio.Event()
        saved = 0

        async def save_batch() -> None:
            nonlocal saved
            await writer.save_all(tickers(2, 3, writer="w", start=saved))
            saved += 6

        async def write() -> None:  # a steady stream of saves between the kills
            while not stop.is_set():
                await running.wait()
                await save_batch()
                await asyncio.sleep(0.002)

        def feed() -> FeedStats:
            stats = store.stats()
            assert stats is not None
            return stats

        writer_task = asyncio.create_task(write())
        admin = await asyncpg.connect(pg_admin_dsn)
        killed: list[int] = []
        try:
            for k in range(kills):
                running.set()
                await wait_until(
                    lambda: store.listener_pid not in (None, *killed), "a new LISTEN connection"
                )
                before = saved
                await wait_until(lambda before=before: saved >= before + 12, "saves between kills")
                await live.wait_for(saved)  # events flow again
                pid = store.listener_pid
                assert pid is not None
                name = await admin.fetchval(
                    "SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid
                )
                assert name == "eventuali_pg_listener"
                running.clear()
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
                killed.append(pid)
                # Save while the connection is down (its NOTIFY is lost), then nothing more:
                # only the catch-up after the reconnect can deliver this batch.
                await wait_until(lambda: not feed().listening, f"loss #{k + 1} noticed")
                await save_batch()
                await wait_until(lambda k=k: feed().reconnects >= k + 1, f"reconnect #{k + 1}")
                await live.wait_for(saved)
                if k == kills // 2:
                    receiver = await streamer.subscribe(Subscription(id="zero", from_position=0))
                    collectors.append(Collector(receiver, name="zero"))
        finally:
            await admin.close()
            stop.set()
            running.set()
            async with asyncio.timeout(WAIT):
                await writer_task

        total = await writer.get_global_position()
        assert total == saved
        for collector in collectors:
            await collector.wait_for(total)
            assert_exact(collector, 0, total)
            assert not collector.task.done()  # the iteration never ended
        stats = feed()
        assert stats.reconnects >= kills and stats.notifications > 0 and stats.polls == 0
        assert len(set(killed)) == kills
        await cancel_all(collectors)


# -- a restarted server --------------------------------------------------------------------------


@pytest.mark.parametrize("shutdown", ["fast", "immediate"])
async def test_restarted_server_subscribers_resume_and_receive_everything(
    dsn: str, embedded_server: EmbeddedServer, shutdown: str
) -> None:
    streamer = EventStreamer(capacity=16)
    async with (
        await EventStore.create(
            dsn,
            streamer=streamer,
            heartbeat_interval=0.2,
            heartbeat_timeout=1.0,
            poll_interval=0.2,
            connect_timeout=2.0,
        ) as store,
        await EventStore.create(dsn, pool_max_size=2, connect_timeout=2.0) as writer,
    ):
        live = Collector(await streamer.subscribe(Subscription(id="live")), name="live")
        collectors = [live]
        committed: list[str] = []
        failures = 0
        saved_after_restart = 0
        restarted = asyncio.Event()
        stop = asyncio.Event()

        async def write() -> None:
            nonlocal failures, saved_after_restart
            n = 0
            while not stop.is_set():
                ticker = tickers(1, 3, writer="w", start=n)[0]
                while True:
                    try:
                        await writer.save(ticker)
                        break
                    except DatabaseUnavailableError:
                        failures += 1  # the server is down: retry until it is back
                        await asyncio.sleep(0.05)
                    except ConcurrencyError:
                        # an attempt whose outcome was unknown had committed after all
                        assert await writer.get_aggregate_version(ticker.id) == ticker.version
                        ticker.mark_events_as_committed()
                        break
                committed.append(ticker.id)
                n += 3
                if restarted.is_set():
                    saved_after_restart += 1
                await asyncio.sleep(0.002)

        writer_task = asyncio.create_task(write())
        try:
            await live.wait_for(150)
            # fast: clients are told and disconnected; immediate: a crash, recovered on start
            await asyncio.to_thread(embedded_server.stop, mode=shutdown)  # type: ignore[arg-type]
            assert not embedded_server.running
            await wait_until(lambda: failures >= 3, "saves failing while the server is down")
            # a subscriber that starts while the server is down, from the beginning
            receiver = await streamer.subscribe(Subscription(id="zero", from_position=0))
            collectors.append(Collector(receiver, name="zero"))
            await asyncio.to_thread(embedded_server.start)
            restarted.set()
            await wait_until(lambda: saved_after_restart >= 30, "saves after the restart")
        finally:
            stop.set()
            async with asyncio.timeout(WAIT):
                await writer_task

        total = await writer.get_global_position()
        assert total == 3 * len(committed)
        for collector in collectors:
            await collector.wait_for(total, timeout=WAIT)
            assert_exact(collector, 0, total)
            assert not collector.task.done()  # the iteration never ended nor raised
            delivered = [item.event.aggregate_id for item in collector.items]
            assert delivered == [aggregate_id for aggregate_id in committed for _ in range(3)]
            assert [i.stream_position for i in collector.items] == [1, 2, 3] * len(committed)
        assert failures >= 3
        # the LISTEN connection comes back too (its backoff may still be running)
        await wait_until(
            lambda: store.stats().reconnects >= 1 and store.stats().listening,  # type: ignore[union-attr]
            "the LISTEN connection to come back",
        )
        await cancel_all(collectors)


# -- slow and fast consumers together ------------------------------------------------------------


async def test_slow_and_fast_consumers_with_a_tiny_buffer(dsn: str) -> None:
    capacity, saves, per_save = 8, 100, 24
    total = saves * per_save
    streamer = EventStreamer(capacity=capacity)
    finish_order: list[str] = []
    deepest = {"fast": 0, "slow": 0}

    def depth_probe(name: str) -> object:
        def probe(_item: object) -> None:
            receiver = fast.receiver if name == "fast" else slow.receiver
            deepest[name] = max(deepest[name], receiver.stats().buffer_depth)

        return probe

    async with await EventStore.create(dsn, streamer=streamer) as store:
        fast = Collector(
            await streamer.subscribe(Subscription(id="fast")),
            name="fast",
            stop_at=total,
            finish_order=finish_order,
            on_event=depth_probe("fast"),  # type: ignore[arg-type]
        )
        slow = Collector(
            await streamer.subscribe(Subscription(id="slow")),
            name="slow",
            delay=0.001,
            stop_at=total,
            finish_order=finish_order,
            on_event=depth_probe("slow"),  # type: ignore[arg-type]
        )
        for i in range(saves):
            await store.save_all(tickers(4, per_save // 4, writer="w", start=i * per_save))
        await fast.finished(timeout=WAIT)
        await slow.finished(timeout=WAIT)
        assert finish_order == ["fast", "slow"]
        for collector in (fast, slow):
            assert_exact(collector, 0, total)
            assert_each_writer_in_order(collector)
        slow_stats = slow.receiver.stats()
        assert slow_stats.overflows > 0 and slow_stats.catch_ups > 0
        assert slow_stats.delivered == total
        # memory stays bounded: at most a buffer of `capacity` events and one catch-up page
        bound = capacity + MIN_CATCH_UP_PAGE
        assert 0 < deepest["slow"] <= bound and deepest["fast"] <= bound
        await cancel_all([fast, slow])
