"""Projection building over the replay rows: at-least-once and exactly-once, from position 0.

The events table holds the replay group's rows (``fill_events``: positions 1..N, ``BenchEvent``,
ten events per aggregate). Each workload starts a fresh :class:`ProjectionRunner` from position 0
and is timed from ``start`` to the moment it has handled position N (catch-up from the table,
handling, checkpoints). Compare with the catch-up replay row of the same run (``replay`` group):
a runner is a subscriber plus handling plus checkpoints, so the ratio is what projecting costs
over reading.

- at-least-once, trivial handler: ``handle_batch`` counts events in memory, batches of 1000.
- exactly-once, one row per event: ``handle_batch`` inserts one row per event of the batch (one
  ``INSERT ... SELECT unnest(...)``) in the transaction that moves the checkpoint, batches of 1000.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from eventuali_pg import Event, EventStore
from eventuali_pg.projections import Projection, ProjectionRunner, TransactionalProjection

from ._common import Settings, admin_connect, fill_events, rate
from ._report import Results

AT_LEAST_ONCE = "projection.at_least_once"
EXACTLY_ONCE = "projection.exactly_once"
BATCH = 1000

INSERT_ROWS = (
    "INSERT INTO bench_projected (global_position, aggregate_id) "
    "SELECT * FROM unnest($1::bigint[], $2::text[])"
)


class CountingProjection(Projection):
    """At-least-once, a trivial handler: the runner's own cost."""

    def __init__(self) -> None:
        self.handled = 0

    async def handle_event(self, event: Event) -> None:
        self.handled += 1

    async def handle_batch(self, events: Sequence[Event]) -> None:
        self.handled += len(events)


class RowPerEventProjection(TransactionalProjection):
    """Exactly-once, one read-model row per event, one statement per batch."""

    async def handle_event(self, event: Event, connection: Any) -> None:
        await connection.execute(INSERT_ROWS, [event.global_position], [event.aggregate_id])

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        await connection.execute(
            INSERT_ROWS,
            [event.global_position for event in events],
            [event.aggregate_id for event in events],
        )

    async def reset(self, connection: Any) -> None:
        await connection.execute("TRUNCATE bench_projected")


async def run(dsn: str, settings: Settings, results: Results) -> None:
    count = settings.replay_events
    admin = await admin_connect(dsn)
    try:
        await fill_events(admin, count)
        await admin.execute(
            "CREATE TABLE IF NOT EXISTS bench_projected "
            "(global_position bigint PRIMARY KEY, aggregate_id text NOT NULL)"
        )
        await admin.execute("TRUNCATE bench_projected")
        results.record(
            AT_LEAST_ONCE,
            f"projection, at-least-once, trivial handler, {count:,} events",
            "events/s",
            await measure(dsn, CountingProjection(), count),
        )
        results.record(
            EXACTLY_ONCE,
            f"projection, exactly-once, one row per event, batches of {BATCH}",
            "events/s",
            await measure(dsn, RowPerEventProjection(), count),
        )
        written = int(await admin.fetchval("SELECT count(*) FROM bench_projected"))
        if written != count:
            raise RuntimeError(f"exactly-once projection wrote {written} rows, expected {count}")
        await admin.execute("DROP TABLE bench_projected")
    finally:
        await admin.close()
    results.note(
        f"Projections: a fresh ProjectionRunner from position 0 over the replay rows, batch size "
        f"{BATCH}, checkpoint every 1000, timed from start to position {count:,} handled; the "
        "reference is the catch-up replay of the same rows in the same run."
    )


async def measure(dsn: str, projection: Projection | TransactionalProjection, count: int) -> float:
    async with await EventStore.create(dsn) as store:
        runner = ProjectionRunner(
            store,
            projection,
            subscription_id=f"bench-{secrets.token_hex(4)}",
            batch_size=BATCH,
            checkpoint_every=1000,
            capacity=2 * BATCH,
        )
        started = time.perf_counter()
        async with runner:
            await runner.wait_for_position(count, timeout=3600)
            elapsed = time.perf_counter() - started
    return rate(count, elapsed)
