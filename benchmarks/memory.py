"""Memory: RSS of a process whose one subscriber (capacity 1000) never reads, over N events.

The subscriber runs in a subprocess (``python -m benchmarks.memory --subscriber``) so its RSS
is its own. N rows are made with COPY (shared with the replay workload) and moved to a staging
table; the events table is emptied, the subprocess attaches a streamer and subscribes live
without ever reading, then this process appends the rows back in transactions of 10,000
(INSERT ... SELECT from the staging table, advance the global sequence, NOTIFY), as appends
would. The subprocess's feed reads, decodes and publishes all N events; the stalled receiver
overflows after ``capacity`` and must stay bounded.

RSS is sampled from ``/proc/self/status`` (VmRSS) every 10 ms by a thread in the subprocess.
Event size: tracemalloc's view of 1000 decoded events wrapped as StreamEvents, per event
(measured in the subprocess after the run). Reported: start (subscribed, before any event),
peak, end, and the growth after the first quarter of the events (max RSS after the 25% mark
minus RSS at it): flat means <= 4 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path

from eventuali_pg import EventStore, EventStreamer, StreamEvent, Subscription

from ._common import SCHEMA, Settings, admin_connect, fill_events
from ._report import Results

START = "memory.start"
PEAK = "memory.peak"
END = "memory.end"
GROWTH = "memory.growth"
BOUND = "memory.bound"
LATE_GROWTH = "memory.late_growth"
EVENT_SIZE = "memory.event_size"

CONSTANT_MIB = 32.0
STEP = 10_000
ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


async def run(dsn: str, settings: Settings, results: Results) -> None:
    count = settings.memory_events
    capacity = settings.memory_capacity
    admin = await admin_connect(dsn)
    try:
        await fill_events(admin, count)
        await admin.execute(
            f"CREATE TABLE {SCHEMA}.bench_stage AS SELECT * FROM {SCHEMA}.events;"
            f"TRUNCATE {SCHEMA}.events;"
            f"UPDATE {SCHEMA}.global_sequence SET position = 0 WHERE id = 1"
        )
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--subscriber",
            dsn,
            str(count),
            str(capacity),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            ready = await asyncio.wait_for(child.stdout.readline(), 60)
            if ready.strip() != b"ready":
                raise RuntimeError(f"memory subprocess did not start: {ready!r}")
            for head in range(0, count, STEP):
                upto = min(head + STEP, count)
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
            out, _ = await asyncio.wait_for(child.communicate(), 1800)
        except BaseException:
            if child.returncode is None:
                child.kill()
                await child.wait()
            raise
        finally:
            await admin.execute(f"DROP TABLE IF EXISTS {SCHEMA}.bench_stage")
    finally:
        await admin.close()
    report = json.loads(out.decode().strip().splitlines()[-1])
    event_bytes = report["event_bytes"]
    bound = capacity * event_bytes / MIB + CONSTANT_MIB
    results.record(START, "stalled subscriber: RSS at start", "MiB", report["start"] / MIB)
    results.record(PEAK, "stalled subscriber: peak RSS", "MiB", report["peak"] / MIB)
    results.record(END, "stalled subscriber: RSS at end", "MiB", report["end"] / MIB)
    results.record(EVENT_SIZE, "decoded event + StreamEvent size", "KiB", event_bytes / 1024)
    results.record(
        GROWTH,
        f"stalled subscriber over {count:,} events: peak - start",
        "MiB",
        (report["peak"] - report["start"]) / MIB,
    )
    results.record(BOUND, "capacity x event size + 32 MiB", "MiB", bound)
    results.record(
        LATE_GROWTH,
        "stalled subscriber: growth after the 25% mark",
        "MiB",
        report["late_growth"] / MIB,
    )
    results.note(
        f"Memory: subscriber subprocess, capacity {capacity}, {count:,} events published through "
        "its store's feed, RSS sampled every 10 ms; the stalled receiver overflows once and stays "
        f"out of the live feed (overflows in the last run: {report['overflows']})."
    )


# -- the subscriber process -----------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _subscriber(dsn: str, count: int, capacity: int) -> None:
    streamer = EventStreamer(capacity=capacity)
    store = await EventStore.create(dsn, streamer=streamer)
    samples: list[tuple[int, int]] = []  # (published position, rss)
    stop = threading.Event()
    try:
        receiver = await streamer.subscribe(Subscription())  # never read
        feed_stats = store.stats

        def sample() -> None:
            while not stop.is_set():
                stats = feed_stats()
                samples.append((stats.published_position if stats else 0, _rss()))
                time.sleep(0.01)

        start_rss = _rss()
        sampler = threading.Thread(target=sample, name="rss sampler", daemon=True)
        sampler.start()
        started = time.monotonic()
        print("ready", flush=True)
        while True:
            stats = store.stats()
            if stats is not None and stats.published_position >= count:
                break
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - started
        await asyncio.sleep(0.3)
        stop.set()
        sampler.join()
        end_rss = _rss()
        overflows = receiver.stats().overflows
        # Event size, measured afterwards on a page of the same rows.
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        page = [StreamEvent.from_stored(e) for e in await store.load_events_from_position(0, 1000)]
        event_bytes = (tracemalloc.get_traced_memory()[0] - before) / len(page)
        tracemalloc.stop()
    finally:
        stop.set()
        await store.close()
    quarter = next((i for i, (pos, _) in enumerate(samples) if pos >= count // 4), 0)
    at_quarter = samples[quarter][1] if samples else start_rss
    peak = max([start_rss, end_rss, *(rss for _, rss in samples)])
    late_peak = max([end_rss, *(rss for _, rss in samples[quarter:])])
    print(
        json.dumps(
            {
                "start": start_rss,
                "peak": peak,
                "end": end_rss,
                "late_growth": late_peak - at_quarter,
                "event_bytes": event_bytes,
                "samples": len(samples),
                "seconds": seconds,
                "overflows": overflows,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--subscriber", nargs=3, metavar=("DSN", "COUNT", "CAPACITY"), required=True
    )
    args = parser.parse_args()
    sub_dsn, sub_count, sub_capacity = args.subscriber
    asyncio.run(_subscriber(sub_dsn, int(sub_count), int(sub_capacity)))
