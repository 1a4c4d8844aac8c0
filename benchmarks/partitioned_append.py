"""Append throughput on a partitioned events table against an ordinary one.

    python benchmarks/partitioned_append.py [--dsn URL] [--runs 3] [--partition-size 5000]
                                            [--quick]

Creates its own database on the server (``--dsn``, default ``EVENTUALI_PG_DSN``), and in every
run two fresh store schemas side by side, one migrated as usual and one with
``partition_size``; each workload runs on both, one after the other, alternating which goes
first. Partitions are small enough for the workloads to cross several boundaries, so the
partitioned figures include creating partitions ahead of need. Prints a markdown table (median
and range over the runs, and the partitioned/ordinary ratio) headed by the command that
produced it. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eventuali_pg
from benchmarks._common import Stopwatch, aggregate_with, rate, with_database
from eventuali_pg import EventStore


async def one_writer(dsn: str, schema: str, per_save: int, saves: int) -> float:
    """Events/s of sequential saves of ``per_save`` events each."""
    aggregates = [aggregate_with(per_save) for _ in range(saves)]
    async with await EventStore.create(dsn, schema=schema, pool_max_size=2) as store:
        await store.save(aggregate_with(1))  # warm the connection and the statement
        with Stopwatch() as sw:
            for aggregate in aggregates:
                await store.save(aggregate)
    return rate(per_save * saves, sw.seconds)


async def concurrent(dsn: str, schema: str, tasks: int, saves_per_task: int) -> float:
    """Events/s of ``tasks`` tasks saving one-event aggregates (coalesced by the writer)."""
    work = [[aggregate_with(1) for _ in range(saves_per_task)] for _ in range(tasks)]
    async with await EventStore.create(
        dsn, schema=schema, pool_min_size=8, pool_max_size=8
    ) as store:
        await asyncio.gather(*(store.save(aggregate_with(1)) for _ in range(tasks)))

        async def writer(aggregates: list[eventuali_pg.Aggregate]) -> None:
            for aggregate in aggregates:
                await store.save(aggregate)

        with Stopwatch() as sw:
            await asyncio.gather(*(writer(list(aggregates)) for aggregates in work))
    return rate(tasks * saves_per_task, sw.seconds)


async def in_transaction(dsn: str, schema: str, saves: int) -> float:
    """Events/s of store transactions saving one 10-event aggregate each (the outbox path,
    where the commit trigger assigns positions and creates partitions ahead)."""
    aggregates = [aggregate_with(10) for _ in range(saves)]
    async with await EventStore.create(dsn, schema=schema, pool_max_size=2) as store:
        async with store.transaction() as tx:
            await tx.save(aggregate_with(1))
        with Stopwatch() as sw:
            for aggregate in aggregates:
                async with store.transaction() as tx:
                    await tx.save(aggregate)
    return rate(10 * saves, sw.seconds)


def workloads(quick: bool) -> list[tuple[str, Callable[[str, str], Awaitable[float]]]]:
    """(label, workload on (dsn, schema)) of every figure."""
    scale = 1 if quick else 4
    return [
        ("1 writer, 100 events/save", lambda d, s: one_writer(d, s, 100, 100 * scale)),
        ("1 writer, 10 events/save", lambda d, s: one_writer(d, s, 10, 300 * scale)),
        ("64 tasks x 1 event/save", lambda d, s: concurrent(d, s, 64, 20 * scale)),
        ("store.transaction(), 10 events", lambda d, s: in_transaction(d, s, 100 * scale)),
    ]


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("EVENTUALI_PG_DSN"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partition-size", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("give --dsn or set EVENTUALI_PG_DSN")

    name = f"bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(args.dsn, name)
    figures: dict[str, dict[str, list[float]]] = {}
    partitions = 0
    try:
        for run in range(args.runs):
            plain, part = f"plain_{run}", f"part_{run}"
            await eventuali_pg.migrate(dsn, schema=plain)
            await eventuali_pg.migrate(dsn, schema=part, partition_size=args.partition_size)
            for index, (label, workload) in enumerate(workloads(args.quick)):
                order = [("ordinary", plain), ("partitioned", part)]
                if (run + index) % 2:
                    order.reverse()
                for kind, schema in order:
                    value = await workload(dsn, schema)
                    figures.setdefault(label, {}).setdefault(kind, []).append(value)
            conn = await asyncpg.connect(dsn)
            try:
                partitions = await conn.fetchval(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass",
                    f"{part}.events",
                )
            finally:
                await conn.close()
    finally:
        admin = await asyncpg.connect(args.dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    shown = [a for i, a in enumerate(argv) if a != "--dsn" and (i == 0 or argv[i - 1] != "--dsn")]
    command = "python benchmarks/partitioned_append.py " + shlex.join(shown)
    print(f"`{command.strip()}` ({args.runs} runs, partitions of {args.partition_size} events; "
          f"the partitioned store had {partitions} partitions after one run)\n")
    print("| workload | ordinary (events/s) | partitioned (events/s) | partitioned / ordinary |")
    print("| --- | --- | --- | --- |")
    for label, kinds in figures.items():
        ordinary, partitioned = kinds["ordinary"], kinds["partitioned"]
        ratio = statistics.median(partitioned) / statistics.median(ordinary)
        print(f"| {label} | {_cell(ordinary)} | {_cell(partitioned)} | {ratio:.2f}x |")
    return 0


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
