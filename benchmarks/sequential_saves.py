"""Sequential saves by one writer, on a fresh database: the quick A/B between two checkouts.

    python benchmarks/sequential_saves.py --dsn postgresql://postgres@127.0.0.1:5432/postgres \\
        [--saves 2000]

Prints saves/s of ``--saves`` one-event saves and events/s of 60 hundred-event saves. To compare
two versions, run it from each checkout in turn, several times, alternating: figures on a
shared 2-core machine move by 10 % or more from one run to the next. Nothing asserts on time.
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
from benchmarks._common import aggregate_with, with_database  # noqa: E402
from eventuali_pg import EventStore  # noqa: E402


async def measure(server_dsn: str, saves: int) -> tuple[float, float]:
    """(one-event saves/s, hundred-event events/s) on a database of their own."""
    name = f"seq_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(server_dsn, name)
    try:
        await eventuali_pg.migrate(dsn)
        store = await EventStore.create(dsn, pool_max_size=2)
        try:
            await store.save(aggregate_with(1))
            singles = [aggregate_with(1) for _ in range(saves)]
            started = time.perf_counter()
            for aggregate in singles:
                await store.save(aggregate)
            single_rate = saves / (time.perf_counter() - started)
            hundreds = [aggregate_with(100) for _ in range(60)]
            started = time.perf_counter()
            for aggregate in hundreds:
                await store.save(aggregate)
            hundred_rate = 6000 / (time.perf_counter() - started)
        finally:
            await store.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    return single_rate, hundred_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a server where the user may CREATE DATABASE")
    parser.add_argument("--saves", type=int, default=2000)
    args = parser.parse_args()
    single, hundred = asyncio.run(measure(args.dsn, args.saves))
    print(f"$ python benchmarks/sequential_saves.py --dsn {args.dsn} --saves {args.saves}")
    print(f"| one-event saves/s | {single:,.0f} |")
    print(f"| 100-event saves, events/s | {hundred:,.0f} |")


if __name__ == "__main__":
    main()
