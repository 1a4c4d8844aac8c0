"""In-memory fan-out: ``publish_event`` to 1, 10 and 100 receivers consumed by tasks.

No store: an EventStreamer (capacity 1000) on its own. The publisher awaits ``publish_event``
for pre-built events in bursts of 500, then yields to the loop until every consumer task is
within one burst of the head (so no receiver overflows; publishing itself never waits). Each
consumer task iterates its receiver with ``async for`` and counts. Deliveries/s = events x
receivers / time from the first publish to the last receipt.

Reference (``QUEUE``): a bare ``asyncio.Queue`` (maxsize 1000), one producer and one consumer,
the same pre-built items, the same bursts and the same yielding rule: the floor that any
in-process fan-out built on asyncio pays per delivery.
"""

from __future__ import annotations

import asyncio

from eventuali_pg import EventStreamer, EventStreamReceiver, Subscription

from ._common import LABEL, BenchEvent, Settings, Stopwatch, rate
from ._report import Results

BURST = 500
QUEUE = "fanout.queue"


def key(receivers: int) -> str:
    return f"fanout.{receivers}"


async def run(dsn: str, settings: Settings, results: Results) -> None:
    for receivers, events in settings.fanout_events.items():
        value = await measure(receivers, events)
        results.record(
            key(receivers), f"in-memory fan-out to {receivers} receiver(s)", "deliveries/s", value
        )
    reference_events = max(settings.fanout_events.values())
    results.record(
        QUEUE,
        "bare asyncio.Queue, 1 producer, 1 consumer (same items, same bursts)",
        "deliveries/s",
        await measure_queue(reference_events),
    )
    results.note(
        f"Fan-out: capacity 1000, bursts of {BURST} publish_event calls, then the publisher "
        "yields until every consumer is within one burst; 16 pre-built events reused."
    )


async def measure(receivers: int, events: int) -> float:
    streamer = EventStreamer(capacity=1000)
    counts = [0] * receivers
    done = asyncio.Event()
    finished = 0
    pool = [BenchEvent(aggregate_id=f"agg-{i}", amount=i, label=LABEL) for i in range(16)]

    async def consume(index: int, receiver: EventStreamReceiver) -> None:
        nonlocal finished
        received = 0
        async for _item in receiver:
            received += 1
            counts[index] = received
            if received == events:
                break
        finished += 1
        if finished == receivers:
            done.set()

    subscribed = [await streamer.subscribe(Subscription()) for _ in range(receivers)]
    tasks = [asyncio.create_task(consume(i, r)) for i, r in enumerate(subscribed)]
    await asyncio.sleep(0)
    with Stopwatch() as sw:
        position = 0
        while position < events:
            for _ in range(min(BURST, events - position)):
                position += 1
                await streamer.publish_event(pool[position % 16], position, position)
            while min(counts) < position - BURST:  # noqa: ASYNC110 (yield to consumers)
                await asyncio.sleep(0)
            await asyncio.sleep(0)
        await done.wait()
    await asyncio.gather(*tasks)
    for receiver in subscribed:
        await receiver.close()
    return rate(events * receivers, sw.seconds)


async def measure_queue(events: int) -> float:
    """The reference: the same bursts through one bare ``asyncio.Queue`` to one consumer."""
    queue: asyncio.Queue[BenchEvent] = asyncio.Queue(maxsize=1000)
    pool = [BenchEvent(aggregate_id=f"agg-{i}", amount=i, label=LABEL) for i in range(16)]
    received = 0

    async def consume() -> None:
        nonlocal received
        while received < events:
            await queue.get()
            received += 1

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    with Stopwatch() as sw:
        position = 0
        while position < events:
            for _ in range(min(BURST, events - position)):
                position += 1
                queue.put_nowait(pool[position % 16])
            while received < position - BURST:  # noqa: ASYNC110 (yield to the consumer)
                await asyncio.sleep(0)
            await asyncio.sleep(0)
        await task
    return rate(events, sw.seconds)
