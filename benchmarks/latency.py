"""Commit-to-receive latency at a steady rate, with 1 and 10 subscribers in the same process.

One writer saves one event every 1/rate seconds (absolute schedule, so a slow save does not
shift later ones). Primary method: ``perf_counter()`` taken just before ``save()``, kept by
aggregate id, subtracted from ``perf_counter()`` when a subscriber receives the event; this
includes the save's own commit. Second method (``ts``): wall clock at receipt minus the event's
own ``timestamp`` (set when the event object is built, right before ``save()``). Third
(``commit``): receipt minus the moment ``save()`` returned, i.e. what the feed adds after the
commit is acknowledged (negative when a subscriber got the event before the saving task resumed).

Reference (``INSERT_P50``): one connection, one prepared ``INSERT`` of the same row into the same
table + autocommit, at the same steady rate, p50 of each call: the disk-flush floor of a save.
"""

from __future__ import annotations

import asyncio
import math
import time

from eventuali_pg import EventStore, EventStreamer, EventStreamReceiver, Subscription

from ._common import (
    COLUMNS,
    LABEL,
    SCHEMA,
    BenchAggregate,
    BenchEvent,
    Settings,
    admin_connect,
    event_rows,
    reset_events,
)
from ._report import Results

INSERT_P50 = "latency.insert_p50"


def key(subscribers: int, what: str, method: str = "") -> str:
    return f"latency.{subscribers}.{what}{'.' + method if method else ''}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def run(dsn: str, settings: Settings, results: Results) -> None:
    for subscribers in (1, 10):
        await measure(dsn, settings, results, subscribers)
    results.record(
        INSERT_P50,
        "bare one-row INSERT + COMMIT at the same rate, p50",
        "ms",
        await insert_reference(dsn, settings),
    )
    results.note(
        f"Latency: one writer at {settings.latency_rate:.0f} events/s for "
        f"{settings.latency_seconds:.0f} s, one event per save; measured from just before save() "
        "to receipt in the subscriber task (same process, perf_counter), so it includes the "
        "commit. 'ts' rows use receipt wall clock minus the event's own timestamp."
    )


async def measure(dsn: str, settings: Settings, results: Results, subscribers: int) -> None:
    admin = await admin_connect(dsn)
    try:
        await reset_events(admin)
    finally:
        await admin.close()
    count = int(settings.latency_seconds * settings.latency_rate)
    streamer = EventStreamer(capacity=1000)
    store = await EventStore.create(dsn, streamer=streamer, pool_min_size=2, pool_max_size=4)
    sent: dict[str, float] = {}
    returned: dict[str, float] = {}
    first_receipt: dict[str, float] = {}
    latencies: list[float] = []
    by_timestamp: list[float] = []
    save_times: list[float] = []

    async def consume(receiver: EventStreamReceiver) -> None:
        received = 0
        async for item in receiver:
            now = time.perf_counter()
            wall = time.time()
            started = sent.get(item.event.aggregate_id)
            if started is not None:
                first_receipt.setdefault(item.event.aggregate_id, now)
                latencies.append(now - started)
                by_timestamp.append(wall - item.event.timestamp.timestamp())
                received += 1
                if received == count:
                    return

    try:
        receivers = [await streamer.subscribe(Subscription()) for _ in range(subscribers)]
        consumers = [asyncio.create_task(consume(r)) for r in receivers]
        await store.save(_one())  # warm up the pool and the feed
        await asyncio.sleep(0.1)
        interval = 1 / settings.latency_rate
        begin = time.perf_counter()
        for i in range(count):
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            aggregate = _one()
            t0 = time.perf_counter()
            sent[aggregate.id] = t0
            await store.save(aggregate)
            t1 = time.perf_counter()
            returned[aggregate.id] = t1
            save_times.append(t1 - t0)
        writing = time.perf_counter() - begin
        async with asyncio.timeout(30):
            await asyncio.gather(*consumers)
    finally:
        await store.close()
    ms = [x * 1000 for x in latencies]
    after_commit = [(first_receipt[a] - returned[a]) * 1000 for a in returned if a in first_receipt]
    ts_ms = [x * 1000 for x in by_timestamp]
    label = f"latency, {subscribers} subscriber(s)"
    results.record(key(subscribers, "p50"), f"{label}: p50", "ms", percentile(ms, 50))
    results.record(key(subscribers, "p99"), f"{label}: p99", "ms", percentile(ms, 99))
    results.record(key(subscribers, "max"), f"{label}: max", "ms", max(ms))
    results.record(
        key(subscribers, "p50", "ts"),
        f"{label}: p50 (timestamp method)",
        "ms",
        percentile(ts_ms, 50),
    )
    results.record(
        key(subscribers, "p99", "ts"),
        f"{label}: p99 (timestamp method)",
        "ms",
        percentile(ts_ms, 99),
    )
    results.record(
        key(subscribers, "p50", "commit"),
        f"{label}: receipt minus commit, p50",
        "ms",
        percentile(after_commit, 50),
    )
    results.record(
        key(subscribers, "p99", "commit"),
        f"{label}: receipt minus commit, p99",
        "ms",
        percentile(after_commit, 99),
    )
    results.record(
        key(subscribers, "save_p50"),
        f"{label}: save() alone, p50",
        "ms",
        percentile([x * 1000 for x in save_times], 50),
    )
    results.record(
        key(subscribers, "rate"), f"{label}: achieved write rate", "events/s", count / writing
    )


async def insert_reference(dsn: str, settings: Settings) -> float:
    """p50 ms of one prepared one-row INSERT + autocommit into the events table, at the rate."""
    count = int(settings.latency_seconds * settings.latency_rate)
    conn = await admin_connect(dsn)
    try:
        await reset_events(conn)
        rows = list(event_rows(0, count + 1))
        placeholders = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        statement = await conn.prepare(
            f"INSERT INTO {SCHEMA}.events ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        )
        await statement.fetch(*rows[-1])  # warm up
        interval = 1 / settings.latency_rate
        times: list[float] = []
        begin = time.perf_counter()
        for i, row in enumerate(rows[:-1]):
            delay = begin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            await statement.fetch(*row)
            times.append((time.perf_counter() - t0) * 1000)
        await reset_events(conn)  # the rows went in without advancing the sequence
    finally:
        await conn.close()
    return percentile(times, 50)


def _one() -> BenchAggregate:
    aggregate = BenchAggregate()
    aggregate.apply(BenchEvent(amount=1, label=LABEL))
    return aggregate
