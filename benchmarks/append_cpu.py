"""CPU time of appends, client and server: the A/B that a loaded machine does not blur.

    python benchmarks/append_cpu.py --dsn postgresql://postgres@127.0.0.1:5432/postgres \\
        [--rounds 3]

For 1 writer x 100 and x 1000 events per save, and 64 tasks x 1 event per save, prints per
event (or save) the wall time, the client's CPU time (``time.process_time``) and the server's:
CPU time and time spent waiting for a CPU, summed over the store's backends from
``/proc/<pid>/schedstat`` (so only with a server on this machine; "n/a" otherwise). On a
saturated machine wall time follows total CPU time, and CPU time moves far less from run to
run than wall time. To compare two versions, run it from each checkout in turn, alternating
(``PYTHONPATH=/path/to/other/checkout python benchmarks/append_cpu.py`` measures the other one).
Each run creates and drops a database of its own. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # last: a PYTHONPATH checkout of another version comes first

import asyncpg  # noqa: E402

import eventuali_pg  # noqa: E402
from benchmarks._common import aggregate_with, bench_database  # noqa: E402
from eventuali_pg import EventStore  # noqa: E402


def _schedstat(pids: list[int]) -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting for one) summed over ``pids``; None when unreadable."""
    try:
        fields = [Path(f"/proc/{pid}/schedstat").read_text().split() for pid in pids]
    except OSError:
        return None
    return sum(int(f[0]) for f in fields), sum(int(f[1]) for f in fields)


async def _backends(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def _measure(dsn: str, label: str, per_save: int, tasks: int, saves: int) -> str:
    store = await EventStore.create(dsn, pool_min_size=tasks, pool_max_size=max(tasks, 2))
    try:
        await asyncio.gather(*(store.save(aggregate_with(per_save)) for _ in range(tasks)))
        work = [[aggregate_with(per_save) for _ in range(saves)] for _ in range(tasks)]

        async def writer(aggregates: list[eventuali_pg.Aggregate]) -> None:
            for aggregate in aggregates:
                await store.save(aggregate)

        pids = await _backends(dsn)
        server_before = _schedstat(pids)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(writer(list(aggregates)) for aggregates in work))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        server_after = _schedstat(pids)
    finally:
        await store.close()
    unit = "save" if per_save == 1 else "event"
    n = tasks * saves * (1 if per_save == 1 else per_save)
    line = (
        f"{label:>22}: wall {wall / n * 1e6:7.1f}  client cpu {cpu / n * 1e6:6.1f}  µs/{unit}"
    )
    if server_before is not None and server_after is not None:
        on_cpu = (server_after[0] - server_before[0]) / n / 1e3
        waiting = (server_after[1] - server_before[1]) / n / 1e3
        line += f"  server cpu {on_cpu:6.1f}  server waiting for a cpu {waiting:6.1f}"
    else:
        line += "  server n/a"
    return line


async def main(server_dsn: str, rounds: int) -> None:
    print(f"eventuali_pg from {Path(eventuali_pg.__file__).parent}")
    async with bench_database(server_dsn) as dsn:
        for _ in range(rounds):
            print(await _measure(dsn, "1 writer x 100/save", 100, 1, 40))
            print(await _measure(dsn, "1 writer x 1000/save", 1000, 1, 8))
            print(await _measure(dsn, "64 tasks x 1/save", 1, 64, 100))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.dsn, arguments.rounds))
