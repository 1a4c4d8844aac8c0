"""Decoding stored events with one upcaster in the chain vs none (issue 10's target: within
15 %), and ``load`` of an aggregate with 10,000 events with and without a snapshot.

    python benchmarks/upcasting.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Rows are put in with COPY on a database of their own; decoding is timed on the fetched rows
(best of 5), the upcaster being a trivial step from version 1 to 2. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

import eventuali_pg  # noqa: E402
from benchmarks._common import MAINTENANCE, BenchEvent, fill_events, with_database  # noqa: E402
from eventuali_pg import Aggregate, Event, EventStore  # noqa: E402
from eventuali_pg.codec import records_to_events  # noqa: E402
from eventuali_pg.store.sql import EVENT_COLUMNS  # noqa: E402


class Counted(Event):
    amount: int


class Counter(Aggregate, snapshot_every=1000):
    total: int = 0

    def apply_counted(self, event: Counted) -> None:
        self.total += event.amount


def best_decode(rows: list[asyncpg.Record]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        records_to_events(rows)
        best = min(best, time.perf_counter() - started)
    return len(rows) / best


async def main(server_dsn: str, rows_count: int) -> None:
    name = f"upcast_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(server_dsn, name)
    try:
        await eventuali_pg.migrate(dsn)
        conn = await asyncpg.connect(dsn, server_settings=MAINTENANCE)
        await fill_events(conn, rows_count)
        rows = await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM eventuali.events ORDER BY global_position"
        )
        await conn.close()
        plain = best_decode(rows)

        @eventuali_pg.upcaster(BenchEvent.__event_type__, from_version=1)
        def step(payload: dict[str, object]) -> dict[str, object]:
            return payload

        BenchEvent.__event_version__, BenchEvent.__versioned__ = 2, True
        upcast = best_decode(rows)
        async with await EventStore.create(dsn) as store:
            counter = Counter(id="counter")
            for n in range(10_000):
                counter.apply(Counted(amount=n))
            await store.save(counter)
            await store._snapshots._queue.join()
            started = time.perf_counter()
            with_snapshot = await store.load(Counter, "counter")
            snapshot_ms = (time.perf_counter() - started) * 1000
            Counter.snapshot_every = None
            started = time.perf_counter()
            full = await store.load(Counter, "counter")
            full_ms = (time.perf_counter() - started) * 1000
            assert with_snapshot is not None and full is not None
            assert with_snapshot.total == full.total
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    print(f"$ python benchmarks/upcasting.py --dsn {server_dsn} --rows {rows_count}")
    print("| figure | value |")
    print("|---|---|")
    print(f"| decode, no upcaster | {plain:,.0f} events/s |")
    ratio = upcast / plain
    print(f"| decode, one upcaster in the chain | {upcast:,.0f} events/s ({ratio:.2f}x) |")
    rate = 10_000 / full_ms * 1000
    print(f"| load of 10,000 events, full replay | {full_ms:.1f} ms ({rate:,.0f} events/s) |")
    print(f"| load of 10,000 events from a snapshot at 10,000 | {snapshot_ms:.1f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rows", type=int, default=50_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.dsn, arguments.rows))
