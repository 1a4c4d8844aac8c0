"""Deterministic in-memory tests of the append writer and the receiver through their seams: a
fake ``run_group`` for the writer, a fake event source and feed for the receiver, with
cancellation at every await (issue 18 item 7). No database: these pin the concurrency logic."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection
from datetime import UTC, datetime

import pytest
from helpers.streaming_domain import Ticked, Ticker

from eventuali_pg import Event, EventStreamer, StreamEvent, Subscription
from eventuali_pg._tasks import cancel_and_wait
from eventuali_pg.codec import EncodedBatch
from eventuali_pg.store.appender import AppendResult, SaveUnit
from eventuali_pg.store.writer import AppendWriter

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def unit_of(aggregate_id: str, events: int = 1) -> SaveUnit:
    ticker = Ticker(id=aggregate_id)
    for n in range(events):
        ticker.tick(n)
    batch = EncodedBatch()
    uncommitted = ticker.get_uncommitted_events()
    for event in uncommitted:
        batch.add(event, max_payload_bytes=10_000)
    return SaveUnit([ticker], [0], uncommitted, batch)


class FakeDatabase:
    """A ``run_group`` that commits every unit, each group waiting for the test's go-ahead."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.head = 0
        self.groups: list[list[str]] = []

    async def run_group(self, units: list[SaveUnit]) -> AppendResult:
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)
        self.groups.append([aggregate_id for u in units for aggregate_id in u.aggregate_ids])
        for unit in units:
            unit.succeed(self.head + 1, NOW)
            self.head += len(unit.events)
        return AppendResult(self.head, units)


@pytest.mark.parametrize("seed", range(60))
async def test_writer_cancellation_at_every_await(seed: int) -> None:
    rng = random.Random(seed)
    database = FakeDatabase(rng)
    notified: list[int] = []
    writer = AppendWriter(
        database.run_group,
        lambda result: notified.append(result.head or 0),
        max_events=rng.choice([1, 3, 100]),
        max_wait=rng.choice([0.0, 0.001]),
    )
    units = [unit_of(f"a{n % 7}", rng.randint(1, 2)) for n in range(20)]
    tasks = [asyncio.create_task(writer.submit(unit)) for unit in units]
    cancelled: set[int] = set()
    for _ in range(rng.randint(0, 12)):
        await asyncio.sleep(0)
        index = rng.randrange(len(tasks))
        if not tasks[index].done():
            tasks[index].cancel()
            cancelled.add(index)
    async with asyncio.timeout(10):
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await writer.close()
    written = [aggregate_id for group in database.groups for aggregate_id in group]
    for index, (unit, result) in enumerate(zip(units, results, strict=True)):
        if isinstance(result, asyncio.CancelledError):
            assert index in cancelled
            # withdrawn before it was taken, or taken and then settled by the writer
            assert unit.done == unit.committed
        else:
            assert result is None and unit.committed
        if unit.committed:
            assert not unit.aggregates[0].has_uncommitted_events()
            assert unit.events[0].global_position == unit.first_position
        else:
            assert unit.aggregates[0].has_uncommitted_events()
    assert len(written) == sum(1 for unit in units if unit.committed)
    for group in database.groups:
        assert len(group) == len(set(group)), "two saves of one aggregate shared a statement"
    assert notified == sorted(notified)


async def test_writer_refuses_saves_after_close() -> None:
    database = FakeDatabase(random.Random(1))
    writer = AppendWriter(database.run_group, lambda result: None, max_events=10, max_wait=0.0)
    await writer.submit(unit_of("x"))
    await writer.close()
    late = unit_of("y")
    with pytest.raises(Exception, match="closed; nothing was written"):
        await writer.submit(late)
    assert not late.done and late.aggregates[0].has_uncommitted_events()


class FakeSource:
    """A table of events to catch up from; every read waits for a turn of the loop."""

    def __init__(self) -> None:
        self.rows: list[Event] = []
        self.reads = 0

    async def load_events_from_position(
        self,
        position: int,
        limit: int | None = None,
        *,
        aggregate_types: Collection[str] | None = None,
        event_types: Collection[str] | None = None,
        up_to: int | None = None,
    ) -> list[Event]:
        self.reads += 1
        await asyncio.sleep(0)
        rows = [
            e
            for e in self.rows
            if (e.global_position or 0) > position
            and (up_to is None or (e.global_position or 0) <= up_to)
            and (event_types is None or e.event_type in event_types)
        ]
        return rows[:limit] if limit is not None else rows

    async def get_stream_position_at(self, aggregate_id: str, up_to: int) -> int | None:
        return None

    def append_and_publish(self, streamer: EventStreamer, count: int) -> None:
        items = []
        for _ in range(count):
            position = len(self.rows) + 1
            event = Ticked(
                n=position,
                aggregate_id="t",
                aggregate_type="Ticker",
                aggregate_version=position,
                global_position=position,
            )
            self.rows.append(event)
            items.append(StreamEvent.from_stored(event))
        streamer._publish_many(items)


@pytest.mark.parametrize("seed", range(40))
async def test_receiver_cancellation_at_every_await_loses_and_repeats_nothing(
    seed: int,
) -> None:
    rng = random.Random(seed)
    source = FakeSource()
    streamer = EventStreamer(capacity=rng.choice([1, 2, 5, 50]))
    streamer._attach_source(source, 0)
    source.append_and_publish(streamer, rng.randint(0, 30))
    receiver = await streamer.subscribe(
        Subscription(from_position=rng.randint(0, len(source.rows)))
    )
    start = receiver.stats().last_position
    total = start + rng.randint(20, 80)
    got: list[int] = []
    while len(source.rows) < total or not got or got[-1] < total:
        if len(source.rows) < total and rng.random() < 0.5:
            source.append_and_publish(streamer, min(rng.randint(1, 10), total - len(source.rows)))
        consumer = asyncio.create_task(receiver.recv())
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        if rng.random() < 0.4 and not consumer.done():
            await cancel_and_wait(consumer)  # cancelled at whatever await it reached
        else:
            if len(source.rows) < total:
                source.append_and_publish(streamer, 1)
            async with asyncio.timeout(5):
                got.append((await consumer).global_position)
    assert got == list(range(start + 1, total + 1))


async def test_cancel_and_wait_never_swallows_the_callers_cancellation() -> None:
    child_unwound = asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # unwinding takes a while
            child_unwound.set()

    task = asyncio.create_task(child())
    await asyncio.sleep(0)

    async def owner() -> str:
        await cancel_and_wait(task)
        return "finished"

    owner_task = asyncio.create_task(owner())
    await asyncio.sleep(0)
    owner_task.cancel()  # the owner is cancelled while the child unwinds
    with pytest.raises(asyncio.CancelledError):
        await owner_task  # before the fix: the owner carried on as if not cancelled
    assert child_unwound.is_set() and task.cancelled()
