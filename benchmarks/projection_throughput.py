"""Projection throughput: events per second through a ProjectionRunner, by delivery mode.

    python benchmarks/projection_throughput.py [--dsn URL] [--events 20000] [--runs 3]

Creates its own database on the server (``--dsn``, default ``EVENTUALI_PG_DSN``), migrates it,
appends ``--events`` events over 100 aggregates, then for each workload runs a fresh runner from
position 0 to the head and times it (catch-up from the table plus handling plus checkpoints).
Prints a markdown table (median and range over the runs) headed by the command that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eventuali_pg
from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg.projections import (
    Projection,
    ProjectionRunner,
    TransactionalProjection,
)

AGGREGATES = 100


class ProjBenchTicked(Event, event_type="bench.projection.Ticked"):
    amount: int


class ProjBenchCounter(Aggregate):
    aggregate_type = "bench.projection.Counter"
    total: int = 0

    def apply_bench_projection_ticked(self, event: ProjBenchTicked) -> None:
        self.total += event.amount


UPSERT_ONE = (
    "INSERT INTO bench_counters (aggregate_id, n) VALUES ($1, 1) "
    "ON CONFLICT (aggregate_id) DO UPDATE SET n = bench_counters.n + 1"
)
UPSERT_MANY = (
    "INSERT INTO bench_counters (aggregate_id, n) SELECT * FROM unnest($1::text[], $2::int[]) "
    "ON CONFLICT (aggregate_id) DO UPDATE SET n = bench_counters.n + EXCLUDED.n"
)


class PerEventSql(TransactionalProjection):
    """Exactly-once, one upsert per event (the default handle_batch loops handle_event)."""

    async def handle_event(self, event: Event, connection: Any) -> None:
        await connection.execute(UPSERT_ONE, event.aggregate_id)

    async def reset(self, connection: Any) -> None:
        await connection.execute("TRUNCATE bench_counters")


class BatchSql(PerEventSql):
    """Exactly-once, one statement per batch."""

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        counts = Counter(event.aggregate_id for event in events)
        await connection.execute(UPSERT_MANY, list(counts), list(counts.values()))


class InMemory(Projection):
    """At-least-once, a counter in memory (the runner's own overhead)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def handle_event(self, event: Event) -> None:
        self.counts[event.aggregate_id] += 1


class BatchInMemory(InMemory):
    async def handle_batch(self, events: Sequence[Event]) -> None:
        self.counts.update(event.aggregate_id for event in events)


#: (label, mode, projection factory, batch size, events measured: None = all)
Workload = tuple[str, str, Callable[[], Any], int, int | None]

WORKLOADS: list[Workload] = [
    ("exactly-once, one SQL upsert per event", "exactly_once", PerEventSql, 100, None),
    ("exactly-once, one SQL statement per batch", "exactly_once", BatchSql, 100, None),
    ("exactly-once, one SQL statement per batch", "exactly_once", BatchSql, 1000, None),
    # One transaction (one commit) per event: measured on the first 2,000 events only.
    ("exactly-once, one upsert per event", "exactly_once", PerEventSql, 1, 2000),
    ("at-least-once, in memory, handle_event", "at_least_once", InMemory, 100, None),
    ("at-least-once, in memory, handle_batch", "at_least_once", BatchInMemory, 1000, None),
]


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(database, safe=""), parts.query, ""))


async def seed(store: EventStore, events: int) -> None:
    counters = [ProjBenchCounter(id=f"c-{i:03d}") for i in range(AGGREGATES)]
    remaining = events
    while remaining > 0:
        batch = counters[: min(AGGREGATES, remaining)]
        for counter in batch:
            counter.apply(ProjBenchTicked(amount=1))
        await store.save_all(batch)
        remaining -= len(batch)


async def measure(dsn: str, workload: Workload, head: int, run: int) -> float:
    _label, _mode, factory, batch_size, limit = workload
    target = min(head, limit) if limit is not None else head
    async with await EventStore.create(dsn) as store:
        async with store.connection() as conn:
            await conn.execute("TRUNCATE bench_counters")
        runner = ProjectionRunner(
            store,
            factory(),
            subscription_id=f"bench-{run}-{secrets.token_hex(4)}",
            batch_size=batch_size,
            checkpoint_every=1000,
            capacity=max(1000, batch_size * 2),
        )
        started = time.perf_counter()
        async with runner:
            await runner.wait_for_position(target, timeout=600)
            elapsed = time.perf_counter() - started
        if runner.mode == "exactly_once":
            async with store.connection() as conn:
                total = await conn.fetchval("SELECT sum(n) FROM bench_counters")
            assert total >= target, (total, target)
    return target / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("EVENTUALI_PG_DSN"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.dsn:
        parser.error("pass --dsn or set EVENTUALI_PG_DSN (a server where a database may be made)")

    name = f"bench_projection_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(args.dsn, name)
    rates: dict[int, list[float]] = {i: [] for i in range(len(WORKLOADS))}
    try:
        await eventuali_pg.migrate(dsn)
        async with await EventStore.create(dsn) as store:
            await seed(store, args.events)
            head = await store.get_global_position()
            async with store.connection() as conn:
                await conn.execute(
                    "CREATE TABLE bench_counters (aggregate_id text PRIMARY KEY, n int NOT NULL)"
                )
        for run in range(args.runs):
            for index, workload in enumerate(WORKLOADS):
                rates[index].append(await measure(dsn, workload, head, run))
    finally:
        admin = await asyncpg.connect(args.dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    command = shlex.join(["python", *sys.argv])
    print(f"`{command}`\n")
    print(
        f"{head} events on {AGGREGATES} aggregates, from position 0 to the head; "
        f"{args.runs} run(s); {os.cpu_count()} CPU(s); Python {sys.version.split()[0]}\n"
    )
    print("| workload | batch size | events/s (median) | range |")
    print("|---|---:|---:|---:|")
    for index, (label, _mode, _factory, batch_size, _limit) in enumerate(WORKLOADS):
        values = rates[index]
        print(
            f"| {label} | {batch_size} | {statistics.median(values):,.0f} | "
            f"{min(values):,.0f} - {max(values):,.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
