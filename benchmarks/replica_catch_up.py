"""Catch-up of a subscriber from position 0: from a streaming replica vs from the primary, with
one writer appending to the primary meanwhile.

    python benchmarks/replica_catch_up.py --events 1000000
    python benchmarks/replica_catch_up.py --primary-dsn URL --replica-dsn URL --events 100000

Without DSNs it starts its own primary and hot standby on free ports from PostgreSQL's binaries
(``tests/helpers/replication.py``; as root they run as the ``postgres`` OS user) and deletes them
afterwards; with DSNs it creates a database of its own on them (dropped at the end). The
rows are put in with COPY; each catch-up is one receiver reading pages of 1,000 events to the
head, the writer saving one event per save until the catch-up ends. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import asyncpg  # noqa: E402

from benchmarks._common import (  # noqa: E402
    MAINTENANCE,
    SCHEMA,
    aggregate_with,
    bench_database,
    fill_events,
    with_database,
)
from eventuali_pg import EventStore, EventStreamer, Subscription  # noqa: E402


async def _replica_head(dsn: str) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return -1  # CREATE DATABASE not replayed yet
    try:
        return int(await conn.fetchval(f"SELECT position FROM {SCHEMA}.global_sequence") or 0)
    except asyncpg.UndefinedTableError:
        return -1
    finally:
        await conn.close()


async def _wait_replayed(replica_dsn: str, head: int) -> None:
    replayed = await _replica_head(replica_dsn)
    while replayed < head:
        await asyncio.sleep(0.2)
        replayed = await _replica_head(replica_dsn)


async def _writer(store: EventStore, stop: asyncio.Event, saved: list[int]) -> None:
    while not stop.is_set():
        await store.save(aggregate_with(1))
        saved[0] += 1


async def catch_up(
    primary_dsn: str, head: int, replica_dsn: str | None
) -> tuple[float, float, str]:
    """Seconds to deliver positions 1..head, appends/s of the writer meanwhile, and where the
    pages were read."""
    options = {} if replica_dsn is None else {"replica_dsn": replica_dsn}
    streamer = EventStreamer(capacity=1000)
    async with await EventStore.create(primary_dsn, streamer=streamer, **options) as store:
        stop, saved = asyncio.Event(), [0]
        writer = asyncio.create_task(_writer(store, stop, saved), name="writer")
        receiver = await streamer.subscribe(Subscription(id=f"bench-{uuid.uuid4().hex[:6]}"), 0)
        started = time.perf_counter()
        async for item in receiver:
            if item.global_position >= head:
                break
        seconds = time.perf_counter() - started
        stop.set()
        await writer
        await receiver.close()
        router = store._replicas
        where = (
            "primary"
            if router is None
            else f"replica {router.replica_reads} pages, primary {router.primary_reads}, "
            f"hand-overs {router.handovers}"
        )
        return seconds, saved[0] / seconds, where


async def run(primary_dsn: str, replica_dsn: str, events: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    async with bench_database(primary_dsn) as dsn:
        standby = with_database(replica_dsn, dsn.rsplit("/", 1)[1])
        conn = await asyncpg.connect(dsn, server_settings=MAINTENANCE)
        try:
            await fill_events(conn, events)
        finally:
            await conn.close()
        await _wait_replayed(standby, events)
        for label, replica in (("primary", None), ("replica", standby)):
            seconds, appends, where = await catch_up(dsn, events, replica)
            rows.append(
                (
                    label,
                    f"{seconds:.1f} s",
                    f"{events / seconds:,.0f} events/s",
                    f"{appends:,.0f}",
                    where,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primary-dsn", help="an existing primary (default: start one)")
    parser.add_argument("--replica-dsn", help="a hot standby of --primary-dsn")
    parser.add_argument("--events", type=int, default=100_000)
    arguments = parser.parse_args()
    command = f"$ python benchmarks/replica_catch_up.py --events {arguments.events}"
    pair = None
    if arguments.primary_dsn and arguments.replica_dsn:
        primary, replica = arguments.primary_dsn, arguments.replica_dsn
        command += f" --primary-dsn {primary} --replica-dsn {replica}"
    else:
        from helpers.replication import ReplicaPair, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            sys.exit("no PostgreSQL binaries to start a replica: pass --primary-dsn/--replica-dsn")
        pair = ReplicaPair(bin_dir)
        pair.start()
        primary, replica = pair.primary_dsn, pair.replica_dsn
    try:
        rows = asyncio.run(run(primary, replica, arguments.events))
    finally:
        if pair is not None:
            pair.stop()
    print(command)
    print("| catch-up read from | time to the head | rate | writer's appends/s | pages read |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
