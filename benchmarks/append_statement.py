"""The append statement alone against a bare INSERT, on one connection: where save() latency goes.

    python benchmarks/append_statement.py [--dsn DSN] [--saves 2000] [--pause SECONDS]

Runs, one after the other on one autocommit connection, each ``--saves`` times and alternating
twice: the store's append statement for one new one-event aggregate (what a lone ``save()``
sends, without the writer task and the pool around it); a bare one-row ``INSERT`` + commit of
the same payload into a one-index table (the disk-flush floor); and a statement that only
receives the append's nineteen parameters and does nothing (the client's encoding and the
round trip). Prints p50 and p90 per statement as a markdown table headed by the command.

``--pause`` prints the server process id and waits that long first, to attach a profiler to
the backend: ``perf record -g -p PID -- sleep 5`` (the issue-14 notes in BENCHMARKS.md came from
such a profile). Creates and drops a database of its own. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from benchmarks._common import aggregate_with, bench_database  # noqa: E402
from eventuali_pg import Aggregate  # noqa: E402
from eventuali_pg.store.appender import append_arguments  # noqa: E402
from eventuali_pg.store.sql import DEFAULT_SCHEMA, store_sql  # noqa: E402
from eventuali_pg.store.units import events_of, unit_of  # noqa: E402

SQL = store_sql(DEFAULT_SCHEMA, DEFAULT_SCHEMA)
BARE = "INSERT INTO bare_insert (payload) VALUES ($1::jsonb)"
NOTHING = (
    "SELECT 1 FROM unnest($1::int[], $2::text[], $3::int[], $4::text[], $5::int[]) a, "
    "unnest($6::int[], $7::uuid[], $8::text[], $9::text[], $10::int[], $11::text[], "
    "$12::int[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], "
    "$18::timestamptz[]) e WHERE $19::text IS NULL"
)


def one_event_arguments() -> tuple[object, ...]:
    aggregate: Aggregate = aggregate_with(1)
    pending = [(aggregate, aggregate.get_uncommitted_events())]
    unit = unit_of(pending, events_of(pending), None, max_payload_bytes=1 << 20)
    assert unit is not None
    return append_arguments([unit], SQL.channel)


async def timed(conn: asyncpg.Connection, what: str, saves: int) -> list[float]:
    times: list[float] = []
    for _ in range(saves):
        if what == "bare INSERT + commit":
            start = time.perf_counter()
            await conn.execute(BARE, '{"amount": 1, "label": "x"}')
        else:
            arguments = one_event_arguments()  # built before the clock, as save() does
            statement = SQL.append if what == "append statement" else NOTHING
            start = time.perf_counter()
            await conn.fetchrow(statement, *arguments)
        times.append(time.perf_counter() - start)
    return sorted(times)


async def main(server_dsn: str, saves: int, pause: float) -> None:
    async with bench_database(server_dsn) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "CREATE TABLE bare_insert (id bigserial PRIMARY KEY, payload jsonb NOT NULL)"
            )
            if pause:
                print(f"server process id {await conn.fetchval('SELECT pg_backend_pid()')}")
                await asyncio.sleep(pause)
            results: dict[str, list[list[float]]] = {}
            for _ in range(2):
                for what in ("append statement", "bare INSERT + commit", "parameters only"):
                    results.setdefault(what, []).append(await timed(conn, what, saves))
        finally:
            await conn.close()
    print("| statement | p50 ms (2 rounds) | p90 ms (2 rounds) |")
    print("|---|---|---|")
    for what, rounds in results.items():
        p50 = ", ".join(f"{r[len(r) // 2] * 1e3:.3f}" for r in rounds)
        p90 = ", ".join(f"{r[int(len(r) * 0.9)] * 1e3:.3f}" for r in rounds)
        print(f"| {what} | {p50} | {p90} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--saves", type=int, default=2000)
    parser.add_argument("--pause", type=float, default=0.0)
    arguments = parser.parse_args()
    print(f"$ python benchmarks/append_statement.py {shlex.join(sys.argv[1:])}\n")
    asyncio.run(main(arguments.dsn, arguments.saves, arguments.pause))
