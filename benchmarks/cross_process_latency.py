"""Commit-to-receive latency across processes: a writer process, a subscriber in this one.

    python benchmarks/cross_process_latency.py [--dsn URL] [--rate 500] [--seconds 10]

Uses the given database as it is (its schema is migrated first). A child process saves one-event
aggregates at a steady ``--rate``; right after each ``save()`` returns (the commit is done) it
records ``time.time()`` for that global position and sends the list back when it ends. This
process subscribes live and records ``time.time()`` on receipt, so the figure is commit ->
NOTIFY -> LISTEN connection -> page read -> receiver, in another process. Both clocks are the
same machine's. Prints a markdown table headed by the command that produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventuali_pg import Aggregate, Event, EventStore, EventStreamer, Subscription, migrate


class CrossProcessPinged(Event):
    sequence: int


class CrossProcessPinger(Aggregate):
    def apply_cross_process_pinged(self, event: CrossProcessPinged) -> None:
        pass


async def write(dsn: str, rate: float, seconds: float) -> None:
    """The child: save at a steady rate, then print {position: commit time} as JSON."""
    committed: dict[int, float] = {}
    async with await EventStore.create(dsn) as store:
        start = time.perf_counter()
        for step in range(int(rate * seconds)):
            delay = start + step / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pinger = CrossProcessPinger()
            pinger.apply(CrossProcessPinged(sequence=step))
            event = pinger.uncommitted_events[0]
            await store.save(pinger)
            committed[event.global_position or 0] = time.time()
    print(json.dumps(committed))


async def measure(dsn: str, rate: float, seconds: float) -> list[float]:
    """Milliseconds from commit (in the writer) to receipt (here), per event."""
    await migrate(dsn)
    received: dict[int, float] = {}
    streamer = EventStreamer(capacity=10_000)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(
            Subscription(event_type_filter="CrossProcessPinged"),
            from_position=await store.get_global_position(),
        )
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--writer",
            "--dsn",
            dsn,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        expected = int(rate * seconds)

        async def consume() -> None:
            async for item in receiver:
                received[item.global_position] = time.time()
                if len(received) == expected:
                    return

        async with asyncio.timeout(seconds * 4 + 60):
            consumer = asyncio.create_task(consume())
            output, _ = await child.communicate()
            await consumer
        assert child.returncode == 0, "the writer process failed"
    committed = {int(k): v for k, v in json.loads(output).items()}
    return sorted((received[p] - committed[p]) * 1000 for p in committed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("EVENTUALI_PG_DSN"))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.dsn:
        from eventuali_pg import embedded

        args.dsn = embedded.start()
    if args.writer:
        asyncio.run(write(args.dsn, args.rate, args.seconds))
        return
    latencies = asyncio.run(measure(args.dsn, args.rate, args.seconds))
    shown = [a for a in sys.argv[1:] if a != args.dsn]
    if "--dsn" in shown:
        shown[shown.index("--dsn")] = "--dsn DSN"
    print(f"$ python benchmarks/cross_process_latency.py {' '.join(shown)}\n")
    print("| events | p50 ms | p99 ms | max ms | negative (clock) |")
    print("|---|---|---|---|---|")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    negative = sum(1 for value in latencies if value < 0)
    print(
        f"| {len(latencies)} | {statistics.median(latencies):.3f} | {p99:.3f} | "
        f"{latencies[-1]:.3f} | {negative} |"
    )


if __name__ == "__main__":
    main()
