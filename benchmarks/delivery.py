"""Live delivery to one subscriber, and catch-up replay from position 0 against raw asyncpg.

Live: a writer *process* (``python -m benchmarks.delivery --writer``) saves N events with
``save_all`` in batches; the subscriber in this process is timed from its first receipt to its
last. The writer runs in its own process so its encoding does not share this process's CPU; its
own rate is reported too, since delivery cannot be faster than the writer.

Replay: N rows are put in the table with COPY; a subscription with ``from_position=0`` is timed
from ``subscribe()`` to the receipt of position N. References on the same rows and connection
settings: a raw asyncpg loop fetching pages of 1000 with the store's own SELECT (prepared),
``json.loads`` of payload and metadata, and construction of the registered event class with
``model_validate`` exactly as the store's codec does (``raw fetch + decode``); and the same
loop with ``json.loads`` only, no event objects (``raw fetch + json.loads``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from eventuali_pg import Event, EventStore, EventStreamer, Subscription, event_class_for
from eventuali_pg.store.sql import EVENT_COLUMNS

from ._common import (
    SCHEMA,
    Settings,
    Stopwatch,
    admin_connect,
    aggregate_with,
    fill_events,
    rate,
)
from ._report import Results

LIVE = "delivery.live"
LIVE_SERVER = "delivery.live_server_writer"
LIVE_RAW = "delivery.raw_decode"
WRITER = "delivery.writer"
REPLAY = "replay.ours"
RAW_DECODE = "replay.raw_decode"
RAW_JSON = "replay.raw_json"

ROOT = Path(__file__).resolve().parent.parent
PAGE = 1000


async def run_live(dsn: str, settings: Settings, results: Results) -> None:
    admin = await admin_connect(dsn)
    try:
        await admin.execute(f"TRUNCATE {SCHEMA}.events")
        await admin.execute(f"UPDATE {SCHEMA}.global_sequence SET position = 0")
    finally:
        await admin.close()
    count = settings.delivery_events
    streamer = EventStreamer(capacity=1000)
    store = await EventStore.create(dsn, streamer=streamer)
    try:
        receiver = await streamer.subscribe(Subscription())
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.delivery",
            "--writer",
            dsn,
            str(count),
            str(settings.delivery_batch),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        first = last = 0.0
        received = 0
        async with asyncio.timeout(600):
            async for _item in receiver:
                received += 1
                if received == 1:
                    first = time.perf_counter()
                if received == count:
                    last = time.perf_counter()
                    break
        out, _ = await writer.communicate()
        writer_report = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        await store.close()
    results.record(
        LIVE,
        "live delivery, 1 subscriber (save_all writer)",
        "events/s",
        rate(count - 1, last - first),
    )
    results.record(
        WRITER, "writer process save_all rate", "events/s", rate(count, writer_report["seconds"])
    )
    results.note(
        f"Live delivery: {count:,} events saved by a separate writer process with save_all in "
        f"batches of {settings.delivery_batch} (100 aggregates x 10 events); subscriber capacity "
        "1000, timed from its first receipt to its last."
    )
    results.record(
        LIVE_SERVER,
        f"live delivery, 1 subscriber ({count:,} committed at once)",
        "events/s",
        await live_server_writer(dsn, count, count),
    )
    results.record(
        LIVE_RAW,
        f"raw asyncpg fetch + decode of the same {count:,} rows",
        "events/s",
        await raw_replay(dsn, count, build=True),
    )
    results.note(
        f"Live delivery ({count:,} committed at once): the same rows appended again "
        "server-side in one transaction (INSERT ... SELECT from a staging table, advance the "
        "global sequence, NOTIFY) while the subscriber is live; the feed wakes once and reads "
        "pages of 1000 to the head, so the figure is what the feed and the receiver can take "
        "without a writer in the way."
    )


async def live_server_writer(dsn: str, count: int, batch: int) -> float:
    """Delivery rate when rows are appended server-side (no client encoding)."""
    admin = await admin_connect(dsn)
    await admin.execute(
        f"DROP TABLE IF EXISTS {SCHEMA}.bench_stage;"
        f"CREATE TABLE {SCHEMA}.bench_stage AS SELECT * FROM {SCHEMA}.events;"
        f"TRUNCATE {SCHEMA}.events;"
        f"UPDATE {SCHEMA}.global_sequence SET position = 0 WHERE id = 1"
    )
    streamer = EventStreamer(capacity=1000)
    store = await EventStore.create(dsn, streamer=streamer)
    first = last = 0.0

    async def write() -> None:
        for head in range(0, count, batch):
            upto = min(head + batch, count)
            async with admin.transaction():
                await admin.execute(
                    f"INSERT INTO {SCHEMA}.events SELECT * FROM {SCHEMA}.bench_stage "
                    "WHERE global_position > $1 AND global_position <= $2",
                    head,
                    upto,
                )
                await admin.execute(
                    f"UPDATE {SCHEMA}.global_sequence SET position = $1 WHERE id = 1", upto
                )
                await admin.execute(f"SELECT pg_notify('{SCHEMA}', $1)", str(upto))

    try:
        receiver = await streamer.subscribe(Subscription())
        writer = asyncio.create_task(write())
        received = 0
        async with asyncio.timeout(600):
            async for _item in receiver:
                received += 1
                if received == 1:
                    first = time.perf_counter()
                if received == count:
                    last = time.perf_counter()
                    break
        await writer
    finally:
        await store.close()
        await admin.execute(f"DROP TABLE IF EXISTS {SCHEMA}.bench_stage")
        await admin.close()
    return rate(count - 1, last - first)


async def run_replay(dsn: str, settings: Settings, results: Results) -> None:
    count = settings.replay_events
    admin = await admin_connect(dsn)
    try:
        await fill_events(admin, count)
    finally:
        await admin.close()
    results.record(
        RAW_DECODE,
        "raw asyncpg fetch + decode",
        "events/s",
        await raw_replay(dsn, count, build=True),
    )
    results.record(
        REPLAY,
        f"catch-up replay of {count:,} from position 0",
        "events/s",
        await our_replay(dsn, count),
    )
    results.record(
        RAW_JSON,
        "raw asyncpg fetch + json.loads only",
        "events/s",
        await raw_replay(dsn, count, build=False),
    )
    results.note(
        "Replay reference 'raw asyncpg fetch + decode': one connection, prepared "
        f"`SELECT <store columns> FROM events WHERE global_position > $1 ORDER BY global_position "
        f"LIMIT {PAGE}`, json.loads of payload and metadata, then the registered event class's "
        "model_validate on envelope + payload (what the store's codec does)."
    )


async def our_replay(dsn: str, count: int) -> float:
    streamer = EventStreamer(capacity=1000)
    store = await EventStore.create(dsn, streamer=streamer)
    try:
        with Stopwatch() as sw:
            receiver = await streamer.subscribe(Subscription(), from_position=0)
            async for item in receiver:
                if item.global_position >= count:
                    break
    finally:
        await store.close()
    return rate(count, sw.seconds)


async def raw_replay(dsn: str, count: int, *, build: bool) -> float:
    conn = await admin_connect(dsn)
    try:
        statement = await conn.prepare(
            f"SELECT {EVENT_COLUMNS} FROM {SCHEMA}.events WHERE global_position > $1 "
            f"ORDER BY global_position LIMIT {PAGE}"
        )
        seen = 0
        position = 0
        with Stopwatch() as sw:
            while True:
                rows = await statement.fetch(position)
                if not rows:
                    break
                if build:
                    for row in rows:
                        _build(row)
                else:
                    for row in rows:
                        json.loads(row["payload"])
                        json.loads(row["metadata"])
                seen += len(rows)
                position = rows[-1]["global_position"]
    finally:
        await conn.close()
    assert seen == count, (seen, count)
    return rate(count, sw.seconds)


def _build(row: Any) -> Event:
    envelope = {
        "event_id": row["event_id"],
        "aggregate_id": row["aggregate_id"],
        "aggregate_type": row["aggregate_type"],
        "aggregate_version": row["aggregate_version"],
        "event_type": row["event_type"],
        "event_version": row["event_version"],
        "global_position": row["global_position"],
        "timestamp": row["occurred_at"],
        "causation_id": row["causation_id"],
        "correlation_id": row["correlation_id"],
        "user_id": row["user_id"],
        "metadata": json.loads(row["metadata"]),
        "recorded_at": row["recorded_at"],
    }
    cls = event_class_for(row["event_type"]) or Event
    return cls.model_validate({**json.loads(row["payload"]), **envelope})


# -- the writer process ---------------------------------------------------------------------


async def _writer(dsn: str, count: int, batch: int) -> None:
    per_aggregate = 10
    batches = [
        [aggregate_with(per_aggregate) for _ in range(batch // per_aggregate)]
        for _ in range(count // batch)
    ]
    store = await EventStore.create(dsn)
    try:
        with Stopwatch() as sw:
            for aggregates in batches:
                await store.save_all(aggregates)
    finally:
        await store.close()
    print(json.dumps({"seconds": sw.seconds, "events": count}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--writer", nargs=3, metavar=("DSN", "COUNT", "BATCH"), required=True)
    args = parser.parse_args()
    writer_dsn, writer_count, writer_batch = args.writer
    asyncio.run(_writer(writer_dsn, int(writer_count), int(writer_batch)))
