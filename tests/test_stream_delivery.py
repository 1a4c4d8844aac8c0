"""Automatic publishing from a store to its streamers (DESIGN.md C3, C5, C9).

Saved events reach subscribers once each and in order, from this process and from another OS
process (through NOTIFY alone), through several streamers, with filtered catch-up, in poll-only
mode, and closing the store ends every receiver and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers.streaming_domain import (
    Collector,
    Order,
    OrderPlaced,
    OrderShipped,
    Ticked,
    User,
    cancel_all,
    cancel_leftover_collectors,
    positions_and_ids,
    tickers,
    wait_until,
)

from eventuali_pg import (
    Aggregate,
    Event,
    EventStore,
    EventStreamer,
    StreamEvent,
    Subscription,
    SubscriptionBuilder,
    SubscriptionClosed,
)

# C1-C6 and the outbox hold on an ordinary and on a partitioned events table.
pytestmark = pytest.mark.store_layouts

WAIT = 60.0  # generous bound on any single wait: a failure, never a measurement
WRITER = Path(__file__).parent / "helpers" / "writer_process.py"


@pytest.fixture(autouse=True)
async def _no_leftover_collectors() -> AsyncIterator[None]:
    yield
    await cancel_leftover_collectors()


@pytest.fixture
async def writer_store(dsn: str) -> AsyncIterator[EventStore]:
    """A second store on the same database, with no streamer: its saves wake nobody here."""
    store = await EventStore.create(dsn, pool_max_size=4)
    try:
        yield store
    finally:
        await store.close()


def events_of(aggregates: list[Aggregate]) -> list[Event]:
    return [event for aggregate in aggregates for event in aggregate.get_uncommitted_events()]


# -- saved events reach subscribers --------------------------------------------------------------



@pytest.fixture(params=["listen", "poll-only"])
def delivery(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The streaming contract holds with LISTEN and in poll-only mode (no LISTEN connection)."""
    return {} if request.param == "listen" else {"notify": False, "poll_interval": 0.05}

async def test_saved_events_reach_subscribers_once_each_in_order(
    dsn: str, delivery: dict[str, Any]
) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer, **delivery) as store:
        first = Collector(await streamer.subscribe(Subscription(id="first")))
        second = Collector(await streamer.subscribe(Subscription(id="second")))
        saved: list[Event] = []
        for round_ in range(5):
            batch = tickers(3, 4, start=round_ * 12)  # several aggregates, several events each
            saved += events_of(batch)
            await store.save_all(batch)
            user = User()
            user.register(f"user {round_}", f"u{round_}@example.com")
            user.change_email(f"u{round_}@new.example.com")
            saved += events_of([user])
            await store.save(user)
        total = len(saved)
        for collector in (first, second):
            await collector.wait_for(total)
            assert collector.positions == list(range(1, total + 1))
            assert [i.event.event_id for i in collector.items] == [e.event_id for e in saved]
            assert [i.stream_position for i in collector.items] == [
                e.aggregate_version for e in saved
            ]
            assert [type(i.event) for i in collector.items] == [type(e) for e in saved]
            assert collector.receiver.stats().delivered == total
        await cancel_all([first, second])


async def test_events_saved_in_this_process_come_exactly_once(
    dsn: str, writer_store: EventStore
) -> None:
    # A local save is published straight after its commit (or wakes the reader when another
    # process's events came first), its NOTIFY comes back on the LISTEN connection, and the poll
    # runs often: several paths that must never turn into duplicates, nor skip anything.
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer, poll_interval=0.02) as store:
        collector = Collector(await streamer.subscribe(Subscription(id="once")))
        rounds, statements = 10, 0
        for i in range(rounds):
            local = [store.save(ticker) for ticker in tickers(3, 2, start=6 * i)]  # concurrent
            await asyncio.gather(*local, writer_store.save_all(tickers(1, 1, writer="other")))
            await store.save(tickers(1, 2, start=6 * i)[0])  # alone
            statements += 2  # at least: concurrent saves may share one statement (one NOTIFY)
        total = rounds * (3 * 2 + 1 + 2)
        await wait_until(
            lambda: store.stats().notifications >= statements and store.stats().polls >= 3,  # type: ignore[union-attr]
            "the notifications of all saves and a few polls",
        )
        await collector.wait_for(total)
        # a sentinel saved afterwards must be the very next event received: nothing in between
        sentinel = User(id="sentinel")
        sentinel.register("last", "last@example.com")
        await store.save(sentinel)
        await collector.wait_for(total + 1)
        assert collector.positions == list(range(1, total + 2))
        assert collector.items[-1].event.aggregate_id == "sentinel"
        ids = await positions_and_ids(dsn)
        assert [i.event.event_id for i in collector.items] == [ids[p] for p in range(1, total + 2)]
        stats = streamer.stats()
        assert (stats.published, stats.duplicates_ignored) == (total + 1, 0)
        await collector.cancel()


async def test_several_streamers_attached_to_one_store_all_receive(
    dsn: str, delivery: dict[str, Any]
) -> None:
    first, second, third = EventStreamer(), EventStreamer(capacity=3), EventStreamer()
    async with await EventStore.create(dsn, streamer=first, **delivery) as store:
        await store.attach_streamer(second)
        await store.attach_streamer(third)
        await store.attach_streamer(third)  # attaching twice changes nothing
        stats = store.stats()
        assert stats is not None and stats.streamers == 3
        collectors = [
            Collector(await first.subscribe(Subscription(id="a"))),
            Collector(await second.subscribe(Subscription(id="a"))),  # ids are per streamer
            Collector(await third.subscribe(Subscription(id="a", aggregate_type_filter="User"))),
        ]
        batch = tickers(4, 5)
        user = User(id="multi-user")
        user.register("M", "m@example.com")
        await store.save_all([*batch, user])
        for collector in collectors[:2]:
            await collector.wait_for(21)
            assert collector.positions == list(range(1, 22))
        await collectors[2].wait_for(21)
        assert collectors[2].positions == [21]
        for streamer in (first, second, third):
            assert await streamer.get_global_position() == 21
        await cancel_all(collectors)


async def test_attach_streamer_after_store_creation(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        assert store.stats() is None and store.listener_pid is None
        before = tickers(1, 3)
        before_ids = [e.event_id for e in events_of(before)]
        await store.save_all(before)  # saved before anything is attached

        streamer = EventStreamer()
        await store.attach_streamer(streamer)
        assert store.stats() is not None and isinstance(store.listener_pid, int)
        assert await streamer.get_global_position() == 3  # starts at the store's head
        live = Collector(await streamer.subscribe(Subscription(id="live")))
        history = Collector(await streamer.subscribe(Subscription(id="history", from_position=0)))
        await store.save_all(tickers(2, 2))
        await live.wait_for(7)
        await history.wait_for(7)
        assert live.positions == [4, 5, 6, 7]
        assert history.positions == list(range(1, 8))
        assert [i.event.event_id for i in history.items[:3]] == before_ids
        await cancel_all([live, history])


async def test_get_stream_position_with_a_store_attached(
    dsn: str, delivery: dict[str, Any]
) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer, **delivery) as store:
        assert await streamer.get_stream_position("user-1") is None
        assert await streamer.get_global_position() == 0
        collector = Collector(await streamer.subscribe(Subscription(id="positions")))
        user = User(id="user-1")
        user.register("One", "one@example.com")
        await store.save(user)
        order = Order(id="order-1")
        order.place(5)
        order.ship()
        await store.save(order)
        user.change_email("one@new.example.com")
        user.deactivate()
        await store.save(user)
        await collector.wait_for(5)
        assert await streamer.get_stream_position("user-1") == 3
        assert await streamer.get_stream_position("order-1") == 2
        assert await streamer.get_stream_position("never-saved") is None
        assert await streamer.get_global_position() == 5
        await collector.cancel()


async def test_stream_events_carry_registered_classes_and_positions(
    dsn: str, writer_store: EventStore, delivery: dict[str, Any]
) -> None:
    # Saved by another store, so the events reach the subscribers as rows read back from the
    # table (live through the reader, and through a catch-up read), not as the saved objects.
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer, **delivery) as store:
        live = Collector(await streamer.subscribe(Subscription(id="fields")))
        order = Order(id="order-fields")
        order.place(1234)
        order.ship("courier")
        order.apply(Event(event_type="OrderGhosted", colour="grey"))  # no class registered
        saved = events_of([order])
        await writer_store.save(order)
        await live.wait_for(3)
        catch_up = Collector(await streamer.subscribe(Subscription(id="again", from_position=0)))
        await catch_up.wait_for(3)
        assert store.stats().published_position == 3  # type: ignore[union-attr]
        for collector in (live, catch_up):
            placed, shipped, ghost = collector.items
            assert all(isinstance(item, StreamEvent) for item in collector.items)
            assert isinstance(placed.event, OrderPlaced) and placed.event.total_cents == 1234
            assert isinstance(shipped.event, OrderShipped) and shipped.event.carrier == "courier"
            assert type(ghost.event) is Event and ghost.event.event_type == "OrderGhosted"
            assert (ghost.event.model_extra or {}).get("colour") == "grey"
            for item, event in zip(collector.items, saved, strict=True):
                assert item.event is not event  # read back, not the saved object
                assert item.event.event_id == event.event_id
                assert item.event.timestamp == event.timestamp
                assert item.event.aggregate_id == "order-fields"
                assert item.event.aggregate_type == "Order"
                assert item.stream_position == event.aggregate_version
                assert item.stream_position == item.event.aggregate_version
                assert item.global_position == event.global_position
                assert item.global_position == item.event.global_position
        await cancel_all([live, catch_up])


async def test_detach_streamer_ends_its_receivers_only(dsn: str, delivery: dict[str, Any]) -> None:
    kept, detached = EventStreamer(), EventStreamer()
    async with await EventStore.create(dsn, streamer=kept, **delivery) as store:
        await store.attach_streamer(detached)
        stays = Collector(await kept.subscribe(Subscription(id="stays")))
        goes = Collector(await detached.subscribe(Subscription(id="goes")))
        await store.save_all(tickers(1, 2))
        await goes.wait_for(2)
        await store.detach_streamer(detached)
        await goes.finished()  # iteration ended cleanly
        with pytest.raises(SubscriptionClosed):
            await goes.receiver.recv(timeout=WAIT)
        await store.save_all(tickers(1, 2))
        await stays.wait_for(4)
        assert stays.positions == [1, 2, 3, 4] and goes.positions == [1, 2]
        assert store.stats().streamers == 1  # type: ignore[union-attr]
        await stays.cancel()


# -- catch-up ------------------------------------------------------------------------------------


async def test_filtered_catch_up_from_a_position_with_several_aggregate_types(
    dsn: str, delivery: dict[str, Any]
) -> None:
    streamer = EventStreamer(capacity=4)  # catch-up pages of 4 rows: many pages
    async with await EventStore.create(dsn, streamer=streamer, **delivery) as store:
        saved: list[Event] = []
        for i in range(12):
            user = User()
            user.register(f"u{i}", f"u{i}@example.com")
            if i % 2:
                user.change_email(f"u{i}@new.example.com")
            order = Order()
            order.place(100 + i)
            if i % 3 == 0:
                order.ship()
            batch: list[Aggregate] = [user, order, *tickers(1, 1 + i % 2, start=i)]
            saved += events_of(batch)
            await store.save_all(batch)
        # the history ends with matching events, so the boundary of the catch-up is tested
        tail_order, tail_user = Order(), User()
        tail_order.place(7)
        tail_order.ship()
        tail_user.register("tail", "tail@example.com")
        tail_user.change_email("tail@new.example.com")
        saved += events_of([tail_order, tail_user])
        await store.save_all([tail_order, tail_user])
        head = len(saved)
        await wait_until(lambda: streamer.stats().global_position == head, "the feed to catch up")
        start = 17

        def matching(keep: object) -> list[int]:
            return [
                e.global_position  # type: ignore[misc]
                for e in saved
                if e.global_position > start and keep(e)  # type: ignore[operator]
            ]

        specs = {
            "users": (
                Subscription(id="users", aggregate_type_filter="User", from_position=start),
                lambda e: e.aggregate_type == "User",
            ),
            "users+orders": (
                SubscriptionBuilder()
                .with_id("users+orders")
                .filter_by_aggregate_type(["User", "Order"])
                .from_position(start)
                .build(),
                lambda e: e.aggregate_type in ("User", "Order"),
            ),
            "emails": (
                Subscription(id="emails", event_type_filter="UserEmailChanged"),
                lambda e: e.event_type == "UserEmailChanged",
            ),
            "shipped-or-registered": (
                Subscription(
                    id="shipped-or-registered",
                    aggregate_type_filter={"Order", "User"},
                    event_type_filter=("OrderShipped", "UserRegistered"),
                    from_position=start,
                ),
                lambda e: e.event_type in ("OrderShipped", "UserRegistered"),
            ),
        }
        collectors = {}
        for name, (subscription, _) in specs.items():
            from_position = start if name == "emails" else None  # also via subscribe()'s kwarg
            receiver = await streamer.subscribe(subscription, from_position=from_position)
            collectors[name] = Collector(receiver)
        # then live, with the same filters
        live_user = User(id="live-user")
        live_user.register("live", "live@example.com")
        live_user.change_email("live@new.example.com")
        live_order = Order(id="live-order")
        live_order.place(1)
        live_order.ship()
        more = events_of([live_user, live_order])
        await store.save_all([live_user, *tickers(1, 2), live_order])
        saved += [e for e in more]
        assert all(e.global_position is not None for e in saved)
        for name, (_, keep) in specs.items():
            expected = matching(keep)
            assert expected and expected[0] > start and expected[-1] > head, name
            collector = collectors[name]
            await collector.wait_for(expected[-1])
            assert collector.positions == expected, name
            assert all(keep(item.event) for item in collector.items), name
            assert collector.receiver.stats().catch_ups >= 1, name
        await cancel_all(collectors.values())


# -- other processes, poll-only mode -------------------------------------------------------------


async def run_writer_process(dsn: str, *args: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        dsn,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(WAIT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_events_appended_by_another_process_arrive_through_notify(dsn: str) -> None:
    streamer = EventStreamer(capacity=50)
    # No poll in practice (one an hour) and nothing saved here: only NOTIFY can deliver.
    async with await EventStore.create(dsn, streamer=streamer, poll_interval=3600) as store:
        assert isinstance(store.listener_pid, int)
        everything = Collector(await streamer.subscribe(Subscription(id="everything")))
        only_users = Collector(
            await streamer.subscribe(Subscription(id="users", aggregate_type_filter="User"))
        )
        results = await asyncio.gather(
            run_writer_process(
                dsn, "--saves", "40", "--aggregates", "3", "--events", "4", "--name", "p1"
            ),
            run_writer_process(
                dsn, "--saves", "30", "--aggregates", "1", "--events", "5", "--name", "p2"
            ),
        )
        total = 40 * 12 + 30 * 5
        assert sum(int(r["events"]) for r in results) == total  # type: ignore[call-overload]
        await everything.wait_for(total)
        assert everything.positions == list(range(1, total + 1))
        assert all(isinstance(i.event, Ticked) for i in everything.items)
        by_writer: dict[str, list[int]] = {"p1": [], "p2": []}
        for item in everything.items:
            by_writer[item.event.writer].append(item.event.n)  # type: ignore[attr-defined]
        assert by_writer == {"p1": list(range(40 * 12)), "p2": list(range(30 * 5))}
        received_ids = {i.event.aggregate_id for i in everything.items}
        assert received_ids == {a for r in results for a in r["aggregate_ids"]}  # type: ignore[attr-defined]
        ids = await positions_and_ids(dsn)
        assert [i.event.event_id for i in everything.items] == [ids[p] for p in range(1, total + 1)]
        assert only_users.items == []
        stats = store.stats()
        assert stats is not None
        assert stats.notifications > 0 and stats.polls == 0
        await cancel_all([everything, only_users])


async def test_poll_only_mode_delivers_without_listen(
    dsn: str, writer_store: EventStore, pg_admin_dsn: str
) -> None:
    streamer = EventStreamer(capacity=10)
    async with await EventStore.create(
        dsn, streamer=streamer, notify=False, poll_interval=0.02
    ) as store:
        assert store.listener_pid is None
        stats = store.stats()
        assert stats is not None and not stats.listening
        live = Collector(await streamer.subscribe(Subscription(id="live")))
        saved = 0
        for i in range(20):  # saved by another store: only the poll can bring them here
            await writer_store.save_all(tickers(2, 3, start=i * 6))
            saved += 6
        await live.wait_for(saved)  # brought by the poll alone
        assert live.positions == list(range(1, saved + 1))
        own = User(id="own")  # saved by this store itself
        own.register("own", "own@example.com")
        await store.save(own)
        saved += 1
        await live.wait_for(saved)
        assert live.positions == list(range(1, saved + 1))
        assert live.items[-1].event.aggregate_id == "own"
        late = Collector(await streamer.subscribe(Subscription(id="late", from_position=0)))
        await late.wait_for(saved)
        assert late.positions == list(range(1, saved + 1))
        stats = store.stats()
        assert stats is not None
        assert stats.notifications == 0 and stats.reconnects == 0 and not stats.listening
        assert stats.polls > 0
        assert store.listener_pid is None
        # and no connection of this database is LISTENing
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            listening = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query ILIKE 'LISTEN%'"
            )
        finally:
            await admin.close()
        assert listening == 0
        await cancel_all([live, late])


# -- closing -------------------------------------------------------------------------------------


async def eventuali_connections(admin_dsn: str, database: str) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND application_name LIKE 'eventuali\\_pg%'",
                database,
            )
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("how", ["close", "async with"])
async def test_closing_the_store_ends_receivers_and_leaves_nothing_behind(
    dsn: str, pg_admin_dsn: str, how: str
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    # backends of earlier tests' closed stores may still be exiting: let them go first
    for _ in range(100):
        if await eventuali_connections(pg_admin_dsn, database) == 0:
            break
        await asyncio.sleep(0.05)
    connections_before = await eventuali_connections(pg_admin_dsn, database)
    tasks_before = asyncio.all_tasks()

    streamer, small = EventStreamer(), EventStreamer(capacity=2)
    store = await EventStore.create(dsn, streamer=streamer, pool_max_size=4)
    try:
        await store.attach_streamer(small)
        await store.save_all(tickers(20, 50))  # 1000 events of history
        feed = store.stats
        await wait_until(lambda: feed().published_position == 1000, "the feed to read it")  # type: ignore[union-attr]
        receivers = [
            await streamer.subscribe(Subscription(id="live")),
            await streamer.subscribe(Subscription(id="users", aggregate_type_filter="User")),
            await small.subscribe(Subscription(id="history", from_position=0)),  # catching up
            await small.subscribe(Subscription(id="idle")),
        ]
        consumed: dict[str, int] = {r.subscription_id: 0 for r in receivers}
        history_may_go_on = asyncio.Event()  # keeps "history" mid-catch-up until the close

        async def consume(receiver: object) -> str:
            async for _ in receiver:  # type: ignore[attr-defined]
                consumed[receiver.subscription_id] += 1  # type: ignore[attr-defined]
                if receiver.subscription_id == "history" and consumed["history"] >= 3:  # type: ignore[attr-defined]
                    await history_may_go_on.wait()
                await asyncio.sleep(0)
            return "ended"

        tasks = [asyncio.create_task(consume(r)) for r in receivers[:3]]
        await store.save_all(tickers(2, 3))
        await wait_until(
            lambda: consumed["live"] == 6 and consumed["history"] > 2, "consumers busy"
        )
        assert await eventuali_connections(pg_admin_dsn, database) > connections_before

        if how == "close":
            await store.close()
            await store.close()  # idempotent
        else:
            async with store:
                pass
        assert store.closed
    finally:
        await store.close()  # when the test failed before closing
        history_may_go_on.set()
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*tasks)  # every loop ends, none raises
    assert results == ["ended"] * 3
    for receiver in receivers:
        assert receiver.closed
        with pytest.raises(SubscriptionClosed):
            await receiver.recv(timeout=WAIT)
    assert consumed["history"] == 3  # it was still catching up when the store closed

    assert asyncio.all_tasks() <= tasks_before, asyncio.all_tasks() - tasks_before
    # a closed connection's server process exits a moment later: wait for it, bounded
    count = None
    try:
        async with asyncio.timeout(WAIT):
            while (count := await eventuali_connections(pg_admin_dsn, database)) > (  # noqa: ASYNC110
                connections_before
            ):
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(
            f"{count} eventuali_pg connections left, {connections_before} before the store"
        ) from None
