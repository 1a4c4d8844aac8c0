"""Soak run: writers, many subscribers (some slow), a projection, for a long time; then the check.

    python benchmarks/soak.py [--dsn DSN] [--minutes 30] [--writers 8] [--rate 50]
                              [--subscribers 50] [--slow 5] [--slow-delay 0.0005]
                              [--report-every 60]

Not part of CI. Creates its own database on the server (default: the embedded server), migrates
it, and runs in one process: ``--writers`` tasks saving new aggregates of 1-5 events at
``--rate`` saves/s each; ``--subscribers`` live subscriptions from position 0, of which
``--slow`` sleep ``--slow-delay`` s per event on a capacity-8 streamer (they overflow and catch up
again and again); one exactly-once projection counting events per aggregate in a table. Every
``--report-every`` seconds it prints a line: head, append rate, RSS, the database's open
connections, asyncio tasks, the worst subscriber lag and the projection lag (events behind the
head). At the end the writers stop and it waits for everyone to reach the head, then checks:
every subscriber received positions 1..head exactly once and in order, the table holds head
events with distinct ids at dense positions, and the projection's counts equal each aggregate's
version. Prints a summary table headed by the command; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    LABEL,
    SCHEMA,
    BenchAggregate,
    BenchEvent,
    bench_database,
)
from eventuali_pg import (  # noqa: E402
    Event,
    EventStore,
    EventStreamer,
    EventStreamReceiver,
    Subscription,
)
from eventuali_pg.projections import ProjectionRunner, TransactionalProjection  # noqa: E402

COUNT_EVENT = (
    "INSERT INTO soak_counts (aggregate_id, events) VALUES ($1, 1) "
    "ON CONFLICT (aggregate_id) DO UPDATE SET events = soak_counts.events + 1"
)


class CountingProjection(TransactionalProjection):
    """Exactly-once: events per aggregate."""

    async def handle_event(self, event: Event, connection: Any) -> None:
        await connection.execute(COUNT_EVENT, event.aggregate_id)


@dataclass
class Follower:
    """One subscriber's view: the last position it got, how many, and order violations."""

    name: str
    slow: bool
    last: int = 0
    received: int = 0
    out_of_order: int = 0


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def follow(receiver: EventStreamReceiver, follower: Follower, delay: float) -> None:
    async for item in receiver:
        if item.global_position != follower.last + 1:
            follower.out_of_order += 1
        follower.last = item.global_position
        follower.received += 1
        if delay:
            await asyncio.sleep(delay)


async def write(store: EventStore, rate: float, stop: asyncio.Event) -> None:
    rng = random.Random()
    interval = 1 / rate
    next_at = time.perf_counter()
    while not stop.is_set():
        aggregate = BenchAggregate()
        for i in range(rng.randint(1, 5)):
            aggregate.apply(BenchEvent(amount=i, label=LABEL))
        await store.save(aggregate)
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        else:
            next_at = time.perf_counter()


async def connections(store: EventStore) -> int:
    async with store.connection() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
        )


async def soak(dsn: str, args: argparse.Namespace) -> list[str]:
    """Run the soak on ``dsn``; the list of failed checks (empty when all hold)."""
    fast = EventStreamer(capacity=1000)
    slow = EventStreamer(capacity=8)
    store = await EventStore.create(dsn, streamer=fast, pool_max_size=args.writers + 4)
    failures: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    try:
        await slow.attach(store)
        async with store.connection() as conn:
            await conn.execute(
                "CREATE TABLE soak_counts (aggregate_id text PRIMARY KEY, events int NOT NULL)"
            )
        followers: list[Follower] = []
        for index in range(args.subscribers):
            is_slow = index < args.slow
            follower = Follower(f"{'slow' if is_slow else 'fast'}-{index}", is_slow)
            streamer = slow if is_slow else fast
            receiver = await streamer.subscribe(Subscription(), from_position=0)
            followers.append(follower)
            tasks.append(
                asyncio.create_task(follow(receiver, follower, args.slow_delay if is_slow else 0))
            )
        runner = ProjectionRunner(
            store, CountingProjection(), subscription_id="soak-counts", batch_size=100
        )
        async with runner:
            writers = [
                asyncio.create_task(write(store, args.rate, stop)) for _ in range(args.writers)
            ]
            tasks.extend(writers)
            started = time.perf_counter()
            deadline = started + args.minutes * 60
            previous_head, previous_at = 0, started
            print(
                "| minute | head | appended/s | RSS MiB | connections | tasks "
                "| worst subscriber lag | projection lag |",
                flush=True,
            )
            print("|---|---|---|---|---|---|---|---|", flush=True)
            while time.perf_counter() < deadline:
                await asyncio.sleep(
                    min(args.report_every, max(0.0, deadline - time.perf_counter()))
                )
                head = await store.get_global_position()
                now = time.perf_counter()
                worst = max(head - f.last for f in followers) if followers else 0
                projection_lag = head - runner.stats().processed_position
                print(
                    f"| {(now - started) / 60:.1f} | {head:,} "
                    f"| {(head - previous_head) / (now - previous_at):,.0f} "
                    f"| {rss_mib():.1f} | {await connections(store)} "
                    f"| {len(asyncio.all_tasks())} | {worst:,} | {projection_lag:,} |",
                    flush=True,
                )
                previous_head, previous_at = head, now
            stop.set()
            await asyncio.gather(*writers)
            head = await store.get_global_position()
            try:
                async with asyncio.timeout(600):
                    while any(f.last < head for f in followers):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                    await runner.wait_for_position(head)
            except TimeoutError:
                failures.append("subscribers or the projection did not reach the head in 600 s")
        for follower in followers:
            if follower.received != head or follower.last != head or follower.out_of_order:
                failures.append(
                    f"{follower.name}: received {follower.received} events, last position "
                    f"{follower.last}, {follower.out_of_order} out of order; head is {head}"
                )
        async with store.connection() as conn:
            rows, ids, top = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT event_id), coalesce(max(global_position), 0) "
                f"FROM {SCHEMA}.events"
            )
            mismatched = await conn.fetchval(
                f"SELECT count(*) FROM {SCHEMA}.streams s FULL JOIN soak_counts c "
                "ON c.aggregate_id = s.aggregate_id "
                "WHERE c.events IS DISTINCT FROM s.version"
            )
        if not rows == ids == top == head:
            failures.append(
                f"table: {rows} rows, {ids} distinct ids, max position {top}; head {head}"
            )
        if mismatched:
            failures.append(f"projection: {mismatched} aggregates counted wrong")
        slow_stats = sum(f.received for f in followers if f.slow)
        print(
            f"\nhead {head:,}; {len(followers)} subscribers ({args.slow} slow received "
            f"{slow_stats:,} events in all); projection at "
            f"{runner.stats().processed_position:,}"
        )
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await slow.close()
        await store.close()
        await fast.close()
    return failures


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("EVENTUALI_PG_DSN"))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50.0, help="saves/s per writer")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--slow", type=int, default=5, help="how many subscribers are slow")
    parser.add_argument("--slow-delay", type=float, default=0.0005, help="s per event (slow ones)")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds between lines")
    args = parser.parse_args(argv)
    if args.writers < 1 or args.rate <= 0 or args.slow > args.subscribers:
        parser.error("need --writers >= 1, --rate > 0 and --slow <= --subscribers")
    shown = ["--dsn", "DSN"] if args.dsn else []
    shown += [a for a in argv if a != args.dsn and a != "--dsn"]
    print(f"$ python benchmarks/soak.py {shlex.join(shown)}\n", flush=True)
    server_dsn = args.dsn
    if not server_dsn:
        from eventuali_pg import embedded

        server_dsn = await asyncio.to_thread(embedded.start)
    async with bench_database(server_dsn) as dsn:
        failures = await soak(dsn, args)
    if failures:
        print("\nFAILED:")
        for failure in failures:
            print(f"- {failure}")
        return 1
    print("\nexact delivery: every subscriber got 1..head once, in order; the projection is exact")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
