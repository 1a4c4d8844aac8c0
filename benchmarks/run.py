"""Run the eventuali-pg benchmark suite and print one table.

    python benchmarks/run.py [--dsn DSN] [--runs N] [--quick] [--only NAME ...]
                             [--replay-events N] [--memory-events N] [--latency-rate R]
                             [--profile DIR]

Without ``--dsn`` the embedded server (``eventuali_pg.embedded.start()``) is used. Each run
creates its own database ``bench_<hex>`` on the server, migrates it, runs every selected
workload in it and drops it. Every figure is shown as the median over the runs, with its range,
and compared with a reference measured in the same run. Nothing here asserts on time.

``--profile DIR`` runs each workload group under cProfile (this process only: the writer
subprocess of ``delivery`` and the threads of ``peers`` are not in it) and writes, per group,
``DIR/<group>.prof`` (all runs together; open with ``python -m pstats`` or snakeviz) and
``DIR/<group>.txt`` (the 40 functions with the most own time, then the 40 with the most
cumulative time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from benchmarks import (  # noqa: E402
    append,
    delivery,
    fanout,
    latency,
    memory,
    peers,
    projections,
)
from benchmarks._common import Settings, bench_database  # noqa: E402
from benchmarks._report import (  # noqa: E402
    Results,
    Row,
    ratio_at_least,
    ratio_at_most,
    render,
    value_at_least,
    value_at_most,
    value_below,
)

Workload = Callable[[str, Settings, Results], Awaitable[None]]

#: Workload groups, in the order they run within one run.
WORKLOADS: dict[str, Workload] = {
    "append": append.run,
    "peers": peers.run,
    "latency": latency.run,
    "delivery": delivery.run_live,
    "replay": delivery.run_replay,
    "projections": projections.run,
    "fanout": fanout.run,
    "memory": memory.run,
}

ROWS: list[Row] = [
    Row(append.SINGLE, append.INSERT_FLOOR),
    Row(append.TRANSACTION, append.SINGLE),
    Row(append.TEN, append.COPY),
    Row(append.HUNDRED, append.COPY, ratio_at_least(0.5, ">= 50% of COPY")),
    Row(append.THOUSAND, append.COPY_THOUSAND, ratio_at_least(0.5, ">= 50% of COPY")),
    Row(append.CONCURRENT, append.INSERT_FLOOR, ratio_at_least(10, ">= 10x INSERT floor")),
    Row(append.CONCURRENT, peers.ES_CONCURRENT, ratio_at_least(10, ">= 10x eventsourcing")),
    Row(append.CONCURRENT, peers.EP_CONCURRENT),
    Row(append.SINGLE, peers.ES_SINGLE),
    Row(append.TEN, peers.ES_TEN),
    Row(append.HUNDRED, peers.ES_HUNDRED),
    Row(append.SINGLE, peers.EP_SINGLE),
    Row(append.TEN, peers.EP_TEN),
    Row(append.HUNDRED, peers.EP_HUNDRED),
    Row(latency.key(1, "p50"), None, value_below(1.0, "< 1 ms")),
    Row(latency.key(1, "p99"), None, value_below(5.0, "< 5 ms")),
    Row(latency.key(1, "max")),
    Row(latency.key(10, "p50"), None, value_below(1.0, "< 1 ms")),
    Row(latency.key(10, "p99"), None, value_below(5.0, "< 5 ms")),
    Row(latency.key(10, "max")),
    Row(latency.key(1, "p50", "ts")),
    Row(latency.key(1, "p99", "ts")),
    Row(latency.key(10, "p50", "ts")),
    Row(latency.key(10, "p99", "ts")),
    Row(latency.key(1, "p50", "commit"), None, value_below(1.0, "< 1 ms")),
    Row(latency.key(1, "p99", "commit"), None, value_below(5.0, "< 5 ms")),
    Row(latency.key(10, "p50", "commit"), None, value_below(1.0, "< 1 ms")),
    Row(latency.key(10, "p99", "commit"), None, value_below(5.0, "< 5 ms")),
    Row(latency.key(1, "save_p50"), latency.INSERT_P50),
    Row(
        latency.key(10, "save_p50"),
        latency.INSERT_P50,
        ratio_at_most(1.5, "<= 1.5x bare INSERT + COMMIT"),
    ),
    Row(latency.key(1, "rate")),
    Row(latency.key(10, "rate")),
    Row(delivery.LIVE, None, value_at_least(100_000, ">= 100,000/s")),
    Row(delivery.LIVE, delivery.WRITER, ratio_at_least(0.95, ">= 95% of the writer")),
    Row(delivery.LIVE_SERVER, None, value_at_least(100_000, ">= 100,000/s")),
    Row(delivery.LIVE_SERVER, delivery.LIVE_RAW, ratio_at_least(0.9, ">= 90% of raw")),
    Row(delivery.REPLAY, delivery.RAW_DECODE, ratio_at_least(1.0, ">= raw fetch + decode")),
    Row(delivery.REPLAY, delivery.RAW_JSON),
    Row(projections.AT_LEAST_ONCE, delivery.REPLAY, ratio_at_least(0.75, ">= 75% of replay")),
    Row(projections.AT_LEAST_ONCE, None, value_at_least(78_000, ">= 78,000/s (idle machine)")),
    Row(projections.EXACTLY_ONCE, delivery.REPLAY, ratio_at_least(0.4, ">= 40% of replay")),
    Row(fanout.key(1), fanout.QUEUE, ratio_at_least(1.0, ">= bare asyncio.Queue")),
    Row(fanout.key(10), fanout.QUEUE),
    Row(fanout.key(100), fanout.QUEUE, ratio_at_least(1.0, ">= bare asyncio.Queue")),
    Row(memory.GROWTH, memory.BOUND, ratio_at_most(1.0, "<= capacity x event + 32 MiB")),
    Row(memory.LATE_GROWTH, None, value_at_most(4.0, "flat: <= 4 MiB")),
    Row(memory.START),
    Row(memory.PEAK),
    Row(memory.END),
    Row(memory.EVENT_SIZE),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="server DSN (default: the embedded server)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(WORKLOADS),
        metavar="NAME",
        help=f"run only these workload groups: {', '.join(WORKLOADS)}",
    )
    parser.add_argument("--replay-events", type=int, help="catch-up replay size (default 1M)")
    parser.add_argument("--memory-events", type=int, help="stalled-subscriber run (default 1M)")
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="events/s of the latency workload (default 500; lower where the server cannot "
        "sustain 500 one-event saves a second: the issue's 'or the highest rate it sustains')",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write a cProfile of each workload group to DIR/<group>.prof and .txt",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


async def describe_server(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = [
            f"{name}={await conn.fetchval(f'SHOW {name}')}"
            for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
        ]
    finally:
        await conn.close()
    return f"PostgreSQL {version} ({', '.join(settings)})"


def versions() -> str:
    found = []
    for package in ("asyncpg", "pydantic", "eventsourcing", "psycopg", "eventsource-py"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def write_profile(directory: Path, name: str, profile: cProfile.Profile) -> list[Path]:
    """Write ``directory/name.prof`` and a text summary ``directory/name.txt``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{name}.prof"
    profile.dump_stats(raw)
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text).strip_dirs()
    text.write(f"# {name}: the 40 functions with the most own time\n")
    stats.sort_stats(pstats.SortKey.TIME).print_stats(40)
    text.write(f"# {name}: the 40 functions with the most cumulative time\n")
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(40)
    summary = directory / f"{name}.txt"
    summary.write_text(text.getvalue())
    return [raw, summary]


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = "python benchmarks/run.py" + ("" if not argv else " " + shlex.join(argv))
    print(f"$ {command}\n", flush=True)
    if args.dsn:
        server_dsn = args.dsn
        server = "--dsn server"
    else:
        from eventuali_pg import embedded

        server_dsn = await asyncio.to_thread(embedded.start)
        server = "embedded server (eventuali_pg.embedded.start())"
    settings = Settings.make(
        quick=args.quick,
        replay_events=args.replay_events,
        memory_events=args.memory_events,
        latency_rate=args.latency_rate,
    )
    selected = [name for name in WORKLOADS if not args.only or name in args.only]
    profiles = {name: cProfile.Profile() for name in selected} if args.profile else {}
    results = Results()
    started = time.monotonic()
    for run_index in range(args.runs):
        results.new_run()
        async with bench_database(server_dsn) as dsn:
            for name in selected:
                print(f"[run {run_index + 1}/{args.runs}] {name} ...", file=sys.stderr, flush=True)
                t0 = time.monotonic()
                profile = profiles.get(name)
                if profile is not None:
                    profile.enable()
                try:
                    await WORKLOADS[name](dsn, settings, results)
                finally:
                    if profile is not None:
                        profile.disable()
                print(
                    f"[run {run_index + 1}/{args.runs}] {name} done in "
                    f"{time.monotonic() - t0:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.monotonic() - started
    print(f"$ {command}\n")
    print(f"- server: {server}; {await describe_server(server_dsn)}")
    print(
        f"- Python {platform.python_version()} on {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPU(s); {versions()}"
    )
    print(f"- {args.runs} run(s), {'quick' if args.quick else 'full'} sizes, {elapsed:.0f} s\n")
    print(render(results, ROWS))
    if args.profile:
        print()
        for name, profile in profiles.items():
            for path in write_profile(args.profile, name, profile):
                print(f"- profile of `{name}`: {path}")
    if results.notes:
        print()
        for note in results.notes:
            print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
