"""Receiver rules found by trying to break them (issue 16 items 7, 9, 11; issue 18 item 5): one
consumer at a time, catch-up pages that do not shrink with the capacity, subscribers that never
share the writer's objects, and a hand publish that cannot silence a store-attached streamer."""

from __future__ import annotations

import asyncio

import pytest
from helpers.streaming_domain import Ticked, Ticker, User, tickers

from eventuali_pg import (
    EventStore,
    EventStreamer,
    ReceiverBusyError,
    ReceiverState,
    Subscription,
)

WAIT = 30.0


async def test_a_second_concurrent_consumer_is_refused_in_memory() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="one"))
    first = asyncio.create_task(receiver.recv(timeout=WAIT))
    await asyncio.sleep(0)  # the first consumer waits inside recv
    with pytest.raises(ReceiverBusyError, match="one consumer at a time"):
        await receiver.recv(timeout=WAIT)
    with pytest.raises(ReceiverBusyError):
        await receiver.__anext__()
    event = Ticked(n=1, aggregate_id="t", aggregate_type="Ticker", aggregate_version=1)
    await streamer.publish_event(event, 1, 1)
    assert (await first).global_position == 1
    await streamer.publish_event(event.model_copy(update={"aggregate_version": 2}), 2, 2)
    assert (await receiver.recv(timeout=WAIT)).global_position == 2  # free again


async def test_two_tasks_iterating_one_catch_up_receiver_never_double_an_event(
    dsn: str,
) -> None:
    streamer = EventStreamer(capacity=10)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        await store.save_all(tickers(10, 30))  # 300 events of history
        receiver = await streamer.subscribe(Subscription(id="shared", from_position=0))
        seen: list[int] = []
        busy: list[BaseException] = []

        async def consume() -> None:
            try:
                async for item in receiver:
                    seen.append(item.global_position)
                    if len(seen) == 300:
                        return
            except ReceiverBusyError as exc:  # before the fix: both got every event
                busy.append(exc)

        async with asyncio.timeout(WAIT):
            await asyncio.gather(consume(), consume())
        assert seen == list(range(1, 301))
        assert len(busy) == 1


async def test_catch_up_pages_do_not_shrink_to_the_capacity(dsn: str) -> None:
    streamer = EventStreamer(capacity=1)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        await store.save_all(tickers(5, 100))
        receiver = await streamer.subscribe(Subscription(from_position=0))
        async with asyncio.timeout(WAIT):
            positions = [(await receiver.recv()).global_position for _ in range(500)]
        assert positions == list(range(1, 501))
        # before the fix: one query per row (500)
        assert receiver.stats().catch_up_reads <= 500 // 100 + 1
        assert receiver.state is ReceiverState.LIVE


async def test_local_subscribers_get_what_load_gives_not_the_writers_objects(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription())
        user = User(id="u-1")
        saved = user.register("Ann", "ann@example.com")
        await store.save(user)
        received = await receiver.recv(timeout=WAIT)
        loaded = (await store.load_events("u-1"))[0]
        assert received.event is not saved  # before the fix: the very same object
        assert received.event == loaded == saved
        saved.name = "changed by the writer afterwards"  # type: ignore[attr-defined]
        assert received.event.name == "Ann"  # type: ignore[attr-defined]


async def test_a_hand_publish_cannot_silence_a_store_attached_streamer(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription())
        stray = Ticked(n=0, aggregate_id="stray", aggregate_type="Ticker", aggregate_version=1)
        assert await streamer.publish_event(stray, 1, 1000) is False
        ticker = Ticker(id="t-1")
        ticker.tick(1)
        await store.save(ticker)
        received = await receiver.recv(timeout=WAIT)  # before the fix: dropped as a duplicate
        assert received.global_position == 1 and received.event.aggregate_id == "t-1"
        assert await streamer.get_global_position() == 1
