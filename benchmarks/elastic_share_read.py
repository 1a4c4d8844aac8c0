"""Elastic consumer groups: what one member reads of the log, by the share it owns.

    python benchmarks/elastic_share_read.py [--dsn URL] [--events 200000] [--runs 3]

Creates its own database (``--dsn``, default ``EVENTUALI_PG_DSN``), fills it with ``--events``
events (10 per aggregate), then reads the log from position 0 to the head the way an elastic
group member does (its partitions' events only, filtered in SQL, pages of 1000) for 1, 4 and 16
of 16 partitions, and the whole log with ``load_events_from_position`` for comparison. Prints a
markdown table (best of ``--runs``) headed by the command that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bench_database, fill_events
from eventuali_pg import EventStore
from eventuali_pg.projections.share import ShareReader

PAGE = 1000


async def read_share(store: EventStore, owned: list[int], head: int) -> tuple[int, float]:
    reader = ShareReader(store, 16)
    started = time.perf_counter()
    position, got, more = 0, 0, True
    while more:
        items, position, more = await reader.page(position, owned, PAGE)
        got += len(items)
    assert position == head
    return got, time.perf_counter() - started


async def read_all(store: EventStore) -> tuple[int, float]:
    started = time.perf_counter()
    position, got = 0, 0
    while page := await store.load_events_from_position(position, PAGE):
        got += len(page)
        position = page[-1].global_position or position
    return got, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("EVENTUALI_PG_DSN"))
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set EVENTUALI_PG_DSN")
    print(f"`python benchmarks/elastic_share_read.py {shlex.join(sys.argv[1:])}`\n")
    async with bench_database(args.dsn) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET eventuali_pg.maintenance = 'on'")
            await fill_events(conn, args.events)
        finally:
            await conn.close()
        async with await EventStore.create(dsn) as store:
            head = await store.get_global_position()
            print(f"{head} events, {head // 10} aggregates, pages of {PAGE}\n")
            print("| read | events read | seconds (best) | positions scanned/s |")
            print("|---|---:|---:|---:|")
            cases: list[tuple[str, list[int] | None]] = [
                ("member owning 1 of 16 partitions", [7]),
                ("member owning 4 of 16 partitions", [0, 1, 2, 3]),
                ("member owning 16 of 16 partitions", list(range(16))),
                ("whole log, load_events_from_position", None),
            ]
            for label, owned in cases:
                results = [
                    await (read_all(store) if owned is None else read_share(store, owned, head))
                    for _ in range(args.runs)
                ]
                got, best = min(results, key=lambda r: r[1])
                print(f"| {label} | {got:,} | {best:.2f} | {head / best:,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
