"""EventStreamReceiver.next_batch: what consecutive ``anext`` calls would give, several events a
call. Order and no duplicate across the catch-up -> live hand-over while writers append, the
same bookkeeping as one-by-one delivery, overflow (with and without a store), a batch pending
when the receiver closes, and a cancellation in the middle of a catch-up read."""

from __future__ import annotations

import asyncio

import pytest
from helpers.streaming_domain import Ticked, tickers

from eventuali_pg import (
    EventStore,
    EventStreamer,
    InvalidInputError,
    ReceiverBusyError,
    ReceiverState,
    Subscription,
    SubscriptionLagged,
)
from eventuali_pg.models import Event

WAIT = 30.0


def tick_event(n: int) -> Event:
    return Ticked(n=n, aggregate_id="ticker-1", aggregate_type="Ticker", aggregate_version=n)


async def publish(streamer: EventStreamer, first: int, last: int) -> None:
    for position in range(first, last + 1):
        await streamer.publish_event(tick_event(position), position, position)


async def test_a_batch_is_the_buffered_events_in_order_up_to_the_limit() -> None:
    streamer = EventStreamer(capacity=10)
    receiver = await streamer.subscribe(Subscription(id="batches"))
    await publish(streamer, 1, 7)
    first = await receiver.next_batch(3)
    assert [item.global_position for item in first] == [1, 2, 3]
    assert receiver.delivered_count == 3 and receiver.stats().buffer_depth == 4
    rest = await receiver.next_batch(100)
    assert [item.global_position for item in rest] == [4, 5, 6, 7]
    stats = receiver.stats()
    assert (stats.delivered, stats.last_position, stats.lag, stats.buffer_depth) == (7, 7, 0, 0)

    # nothing buffered: it waits for the next publish like anext does
    waiting = asyncio.create_task(receiver.next_batch(100))
    await asyncio.sleep(0)
    assert not waiting.done()
    await publish(streamer, 8, 9)
    async with asyncio.timeout(WAIT):
        assert [item.global_position for item in await waiting] == [8, 9]


async def test_the_limit_must_be_a_positive_integer() -> None:
    receiver = await EventStreamer().subscribe(Subscription())
    for limit in (0, -1, 1.5, True, "10"):
        with pytest.raises(InvalidInputError, match="limit"):
            await receiver.next_batch(limit)  # type: ignore[arg-type]


async def test_a_second_consumer_is_refused() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="one"))
    first = asyncio.create_task(receiver.recv(timeout=WAIT))
    await asyncio.sleep(0)
    with pytest.raises(ReceiverBusyError):
        await receiver.next_batch(10)
    await publish(streamer, 1, 2)
    assert (await first).global_position == 1
    assert [item.global_position for item in await receiver.next_batch(10)] == [2]


async def test_catch_up_then_live_in_batches_while_writers_append(dsn: str) -> None:
    streamer = EventStreamer(capacity=50)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        await store.save_all(tickers(10, 50))  # 500 events of history
        batched = await streamer.subscribe(Subscription(id="batched", from_position=0))
        single = await streamer.subscribe(Subscription(id="single", from_position=0))
        total = 500 + 40 * 10

        async def write() -> None:
            for round_ in range(40):
                await store.save_all(tickers(2, 5, start=round_ * 10))
                await asyncio.sleep(0)

        async def take_batches() -> list[list[int]]:
            batches: list[list[int]] = []
            seen = 0
            while seen < total:
                batch = await batched.next_batch(37)
                batches.append([item.global_position for item in batch])
                seen += len(batch)
            return batches

        async def take_singly() -> list[int]:
            return [(await anext(single)).global_position for _ in range(total)]

        async with asyncio.timeout(WAIT):
            batches, singly, _ = await asyncio.gather(take_batches(), take_singly(), write())
        positions = [position for batch in batches for position in batch]
        assert positions == list(range(1, total + 1))  # in order, none twice, none missing
        assert singly == positions
        assert all(1 <= len(batch) <= 37 for batch in batches)
        assert max(len(batch) for batch in batches) == 37  # a page is handed over in batches
        assert batched.state is ReceiverState.LIVE
        # the same bookkeeping as one-by-one delivery
        a, b = batched.stats(), single.stats()
        assert (a.delivered, a.last_position, a.lag, a.buffer_depth) == (
            b.delivered,
            b.last_position,
            b.lag,
            b.buffer_depth,
        )
        assert batched.covered_position == single.covered_position == total


async def test_overflow_while_batching_catches_up_without_loss(dsn: str) -> None:
    streamer = EventStreamer(capacity=5)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription(id="slow"))
        await store.save_all(tickers(1, 3))
        async with asyncio.timeout(WAIT):
            got = [item.global_position for item in await receiver.next_batch(2)]
            # 60 more events while the consumer holds its batch: the buffer of 5 overflows
            for start in range(0, 60, 10):
                await store.save_all(tickers(1, 10, start=start))
            while len(got) < 63:
                got += [item.global_position for item in await receiver.next_batch(4)]
        assert got == list(range(1, 64))
        assert receiver.stats().overflows >= 1
        assert receiver.stats().catch_ups >= 1


async def test_in_memory_overflow_hands_over_the_buffer_then_reports_the_lag() -> None:
    streamer = EventStreamer(capacity=3)
    receiver = await streamer.subscribe(Subscription(id="slow"))
    await publish(streamer, 1, 10)
    assert receiver.state is ReceiverState.OVERFLOWED
    # the buffered events come first, whole: the lag is never raised over events taken
    assert [item.global_position for item in await receiver.next_batch(100)] == [1, 2, 3]
    with pytest.raises(SubscriptionLagged) as lagged:
        await receiver.next_batch(100)
    assert lagged.value.missed == 7 and lagged.value.last_position == 3
    await publish(streamer, 11, 12)
    assert [item.global_position for item in await receiver.next_batch(100)] == [11, 12]


async def test_a_pending_batch_ends_empty_when_the_receiver_closes() -> None:
    streamer = EventStreamer()
    closed = await streamer.subscribe(Subscription(id="closed"))
    unsubscribed = await streamer.subscribe(Subscription(id="unsubscribed"))
    pending = [asyncio.create_task(r.next_batch(10)) for r in (closed, unsubscribed)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in pending)
    await closed.close()
    await streamer.unsubscribe("unsubscribed")
    async with asyncio.timeout(WAIT):
        assert await asyncio.gather(*pending) == [[], []]
    assert await closed.next_batch(10) == []  # and stays ended


async def test_buffered_events_are_dropped_by_close_not_handed_over() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="closing"))
    await publish(streamer, 1, 5)
    assert len(await receiver.next_batch(2)) == 2
    await receiver.close()
    assert await receiver.next_batch(10) == []
    assert receiver.delivered_count == 2


async def test_a_batch_cancelled_in_its_catch_up_read_loses_and_repeats_nothing(dsn: str) -> None:
    streamer = EventStreamer(capacity=10)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        await store.save_all(tickers(5, 100))  # 500 events: several pages
        receiver = await streamer.subscribe(Subscription(id="cancelled", from_position=0))
        got: list[int] = []
        cancelled = 0
        async with asyncio.timeout(WAIT):
            while len(got) < 500:
                task = asyncio.create_task(receiver.next_batch(150))
                await asyncio.sleep(0)  # it is in a catch-up read (or has its batch already)
                if task.done():
                    got += [item.global_position for item in task.result()]
                    continue
                task.cancel()
                try:
                    got += [item.global_position for item in await task]
                except asyncio.CancelledError:
                    cancelled += 1
                got += [item.global_position for item in await receiver.next_batch(150)]
        assert got == list(range(1, 501))
        assert cancelled >= 1
        assert receiver.delivered_count == 500
