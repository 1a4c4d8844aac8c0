"""Issue 15, item 6: the streaming extras of the reference and upstream eventuali:
``Subscription(from_timestamp=...)``, ``SubscriptionBuilder.from_timestamp``,
``Subscription.to_dict()``, ``Projection``/``SagaHandler`` in ``eventuali_pg.streaming``, and
the reference's ResilientEventProcessor (re-subscribing the same Subscription object after its
receiver failed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from helpers.streaming_domain import wait_until

from eventuali_pg import (
    Aggregate,
    ConfigurationError,
    DuplicateSubscriptionError,
    Event,
    EventStore,
    InvalidInputError,
)
from eventuali_pg.streaming import (
    EventStreamer,
    EventStreamReceiver,
    Projection,
    SagaHandler,
    StreamEvent,
    Subscription,
    SubscriptionBuilder,
)


class CompatStreamTicked(Event):
    n: int


class CompatStreamClock(Aggregate):
    ticks: int = 0

    def apply_compat_stream_ticked(self, event: CompatStreamTicked) -> None:
        self.ticks += 1


async def _tick(store: EventStore, clock_id: str, *numbers: int) -> None:
    clock = await store.load(CompatStreamClock, clock_id) or CompatStreamClock(id=clock_id)
    for n in numbers:
        clock.apply(CompatStreamTicked(n=n))
    await store.save(clock)


async def _server_now(dsn: str) -> datetime:
    conn = await asyncpg.connect(dsn)
    try:
        value: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return value
    finally:
        await conn.close()


async def _take(receiver: EventStreamReceiver, count: int) -> list[int]:
    numbers: list[int] = []
    async with asyncio.timeout(60):
        async for item in receiver:
            numbers.append(item.event.n)  # type: ignore[attr-defined]
            if len(numbers) == count:
                break
    return numbers


async def test_from_timestamp_catches_up_from_the_first_event_recorded_since(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        await _tick(store, "clock-ts", 1, 2, 3)
        since = await _server_now(dsn)  # after the first save committed, before the second
        await _tick(store, "clock-ts", 4, 5)
        assert await store.position_before_timestamp(since) == 3
        assert await store.position_before_timestamp(since + timedelta(days=1)) == 5
        assert await store.position_before_timestamp(since - timedelta(days=1)) == 0

        by_keyword = await streamer.subscribe(
            Subscription(id="since", aggregate_type_filter="CompatStreamClock",
                         from_timestamp=since)
        )  # fmt: skip
        by_builder = await streamer.subscribe(
            SubscriptionBuilder().with_id("since-built").from_timestamp(since).build()
        )
        await _tick(store, "clock-ts", 6)  # live after the catch-up
        assert await _take(by_keyword, 3) == [4, 5, 6]
        assert await _take(by_builder, 3) == [4, 5, 6]


async def test_from_timestamp_in_the_future_starts_live(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        await _tick(store, "clock-future", 1)
        later = await _server_now(dsn) + timedelta(hours=1)
        receiver = await streamer.subscribe(Subscription(from_timestamp=later))
        await _tick(store, "clock-future", 2)
        assert await _take(receiver, 1) == [2]


async def test_from_timestamp_needs_a_store_and_an_aware_datetime() -> None:
    streamer = EventStreamer()
    with pytest.raises(ConfigurationError, match="needs a store"):
        await streamer.subscribe(Subscription(from_timestamp=datetime.now(UTC)))
    with pytest.raises(InvalidInputError, match="no time zone"):
        Subscription(from_timestamp=datetime(2025, 1, 1))
    with pytest.raises(InvalidInputError, match="not both"):
        Subscription(from_position=3, from_timestamp=datetime.now(UTC))
    with pytest.raises(InvalidInputError, match="datetime"):
        SubscriptionBuilder().from_timestamp("yesterday")  # type: ignore[arg-type]


def test_subscription_to_dict() -> None:
    moment = datetime(2025, 5, 1, 8, 30, tzinfo=UTC)
    subscription = Subscription(
        id="user-events", aggregate_type_filter="User", from_timestamp=moment
    )
    assert subscription.to_dict() == {
        "id": "user-events",
        "aggregate_type_filter": "User",
        "from_timestamp": "2025-05-01T08:30:00+00:00",
    }
    built = SubscriptionBuilder().filter_by_event_type("A").filter_by_event_type("B").build()
    assert built.to_dict() == {"id": built.id, "event_type_filter": ["A", "B"]}
    assert Subscription(id="p", from_position=7).to_dict() == {"id": "p", "from_position": 7}


def test_projection_and_saga_handler_come_from_streaming() -> None:
    import eventuali_pg

    assert Projection is eventuali_pg.Projection
    assert SagaHandler is eventuali_pg.SagaHandler

    class Saga(SagaHandler):
        pass

    with pytest.raises(NotImplementedError, match="handle_event"):
        asyncio.run(Saga().handle_event(Event()))


class ResilientEventProcessor:
    """The reference's pattern (spec: Error Handling and Resilience), with a short backoff."""

    def __init__(self, streamer: EventStreamer, fail_after: int | None = None) -> None:
        self.streamer = streamer
        self.error_count = 0
        self.processed: list[int] = []
        self.fail_after = fail_after
        self.subscribes = 0

    async def start_processing(self, subscription: Subscription) -> None:
        max_retries = 3
        retry_count = 0
        while retry_count < max_retries:
            try:
                receiver = await self.streamer.subscribe(subscription)
                self.subscribes += 1
                await self._process_events(receiver)
                break
            except Exception as e:
                retry_count += 1
                self.error_count += 1
                if retry_count >= max_retries:
                    raise Exception(f"Failed after {max_retries} retries: {e}") from e
                await asyncio.sleep(0.01 * 2**retry_count)

    async def _process_events(self, receiver: EventStreamReceiver) -> None:
        async for stream_event in receiver:
            self.processed.append(stream_event.event.n)  # type: ignore[attr-defined]
            if self.fail_after is not None and len(self.processed) == self.fail_after:
                self.fail_after = None
                raise RuntimeError("downstream went away")  # the receiver's consumer failed


def _tick_event(n: int) -> CompatStreamTicked:
    return CompatStreamTicked(n=n, aggregate_id="c", aggregate_type="CompatStreamClock")


async def test_resilient_processor_resubscribes_after_its_receiver_lagged() -> None:
    streamer = EventStreamer(capacity=2)  # in memory: an overflowed receiver raises
    processor = ResilientEventProcessor(streamer)
    subscription = Subscription(id="resilient", aggregate_type_filter="CompatStreamClock")
    task = asyncio.create_task(processor.start_processing(subscription))
    await wait_until(lambda: processor.subscribes == 1, "the processor to subscribe")
    for n in range(1, 6):  # publishing never waits: the burst overflows the receiver
        await streamer.publish_event(_tick_event(n), n, n)
    await wait_until(lambda: processor.subscribes == 2, "the processor to re-subscribe")
    assert processor.error_count == 1  # SubscriptionLagged, then the same object again
    for n in range(6, 9):
        await streamer.publish_event(_tick_event(n), n, n)
        await wait_until(lambda: processor.processed[-1] == n, f"event {n}")  # noqa: B023
    assert processor.processed == [1, 2, 6, 7, 8]
    await streamer.unsubscribe("resilient")
    await asyncio.wait_for(task, 60)


async def test_subscribing_the_same_object_again_ends_its_previous_receiver() -> None:
    streamer = EventStreamer()
    subscription = Subscription(id="again")
    first = await streamer.subscribe(subscription)
    second = await streamer.subscribe(subscription)
    assert first.closed and not second.closed
    assert streamer.subscription_ids == ["again"]
    await streamer.publish_event(_tick_event(1), 1, 1)
    assert [item.event.n async for item in _one(second)] == [1]  # type: ignore[attr-defined]
    await streamer.unsubscribe("again")


async def _one(receiver: EventStreamReceiver) -> AsyncIterator[StreamEvent]:
    yield await receiver.recv(timeout=60)


async def test_resilient_processor_resumes_after_a_failure_without_gap_or_repeat(
    dsn: str,
) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        processor = ResilientEventProcessor(streamer, fail_after=2)
        subscription = Subscription(aggregate_type_filter="CompatStreamClock")
        task = asyncio.create_task(processor.start_processing(subscription))
        await wait_until(lambda: processor.subscribes == 1, "the processor to subscribe")
        await _tick(store, "clock-resilient", 1, 2, 3, 4)
        await wait_until(lambda: processor.subscribes == 2, "the processor to re-subscribe")
        await _tick(store, "clock-resilient", 5)
        await wait_until(lambda: len(processor.processed) == 5, "every event")
        assert processor.processed == [1, 2, 3, 4, 5]
        assert processor.error_count == 1
        assert subscription.id is not None
        await streamer.unsubscribe(subscription.id)
        await asyncio.wait_for(task, 60)


async def test_another_subscription_object_with_an_active_id_is_still_refused() -> None:
    streamer = EventStreamer()
    await streamer.subscribe(Subscription(id="taken"))
    with pytest.raises(DuplicateSubscriptionError, match="already active"):
        await streamer.subscribe(Subscription(id="taken"))
    await streamer.unsubscribe("taken")


def test_upstreams_positional_from_timestamp() -> None:
    moment = datetime(2025, 5, 1, tzinfo=UTC)
    subscription = Subscription("positional", "User", None, moment)  # type: ignore[arg-type]
    assert subscription.from_timestamp == moment and subscription.from_position is None


async def test_an_ended_receiver_raises_upstreams_runtime_error() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="ending"))
    await streamer.unsubscribe("ending")
    with pytest.raises(RuntimeError):  # upstream's recv() raises RuntimeError once closed
        await receiver.recv(timeout=60)
