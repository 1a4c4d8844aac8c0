"""Shared pieces of the benchmarks: the event model, per-run databases, bulk rows, settings."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg

import eventuali_pg
from eventuali_pg import Aggregate, Event

SCHEMA = "eventuali"

#: Benchmarks empty the events table between workloads: a maintenance step of the tables'
#: owner (history is append-only otherwise; see migration 0005).
MAINTENANCE = {"eventuali_pg.maintenance": "on"}


async def admin_connect(dsn: str) -> asyncpg.Connection:
    """A connection of the tables' owner allowed to rewrite history (to reset between runs)."""
    return await asyncpg.connect(dsn, server_settings=MAINTENANCE)


LABEL = "benchmark event payload 0123456789"

#: Columns of the events table, in the order of :func:`event_rows`.
COLUMNS = (
    "global_position",
    "event_id",
    "aggregate_id",
    "aggregate_type",
    "aggregate_version",
    "event_type",
    "event_version",
    "payload",
    "causation_id",
    "correlation_id",
    "user_id",
    "metadata",
    "occurred_at",
    "recorded_at",
)


class BenchEvent(Event):
    """The one event type of every workload: a small payload (about 60 bytes of JSON)."""

    amount: int
    label: str


class BenchAggregate(Aggregate):
    """An aggregate that only counts its events."""

    total: int = 0

    def apply_bench_event(self, event: BenchEvent) -> None:
        self.total += event.amount


def aggregate_with(events: int, start: int = 0) -> BenchAggregate:
    """A new aggregate holding ``events`` uncommitted events."""
    aggregate = BenchAggregate()
    for i in range(events):
        aggregate.apply(BenchEvent(amount=start + i, label=LABEL))
    return aggregate


@dataclass(frozen=True)
class Settings:
    """Sizes of every workload (full or ``--quick``)."""

    quick: bool
    single_saves: int  # saves of 1 event by one writer (also the INSERT-per-event floor)
    ten_saves: int  # saves of 10 events
    hundred_saves: int  # saves of 100 events (and the COPY ceiling: the same row count)
    thousand_saves: int  # saves of 1000 events (and its COPY ceiling)
    concurrent_tasks: int
    concurrent_saves_per_task: int
    pool_max_size: int
    latency_seconds: float
    latency_rate: float
    delivery_events: int
    delivery_batch: int
    replay_events: int
    memory_events: int
    memory_capacity: int
    fanout_events: dict[int, int]

    @classmethod
    def make(
        cls,
        *,
        quick: bool,
        replay_events: int | None,
        memory_events: int | None,
        latency_rate: float | None = None,
    ) -> Settings:
        if quick:
            return cls(
                quick=True,
                single_saves=200,
                ten_saves=100,
                hundred_saves=20,
                thousand_saves=4,
                concurrent_tasks=64,
                concurrent_saves_per_task=4,
                pool_max_size=64,
                latency_seconds=2.0,
                latency_rate=latency_rate or 500.0,
                delivery_events=10_000,
                delivery_batch=1000,
                replay_events=replay_events or 20_000,
                memory_events=memory_events or 20_000,
                memory_capacity=1000,
                fanout_events={1: 20_000, 10: 5_000, 100: 1_000},
            )
        return cls(
            quick=False,
            single_saves=2000,
            ten_saves=1000,
            hundred_saves=300,
            thousand_saves=60,
            concurrent_tasks=64,
            concurrent_saves_per_task=40,
            pool_max_size=64,
            latency_seconds=10.0,
            latency_rate=latency_rate or 500.0,
            delivery_events=100_000,
            delivery_batch=1000,
            replay_events=replay_events or 1_000_000,
            memory_events=memory_events or 1_000_000,
            memory_capacity=1000,
            fanout_events={1: 300_000, 10: 100_000, 100: 20_000},
        )


# -- DSNs and databases -------------------------------------------------------------------------


def with_database(dsn: str, database: str) -> str:
    """``dsn`` with its database replaced (host, Unix socket and options kept)."""
    parts = urlsplit(dsn)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in ("dbname", "database")
    ]
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + quote(database, safe=""), urlencode(query, safe="/"), "")
    )


@dataclass(frozen=True)
class ConnParts:
    """The pieces of a DSN that libpq-style clients (psycopg) want separately."""

    host: str
    port: str
    user: str
    password: str
    dbname: str


def dsn_parts(dsn: str) -> ConnParts:
    """Split a ``postgresql://`` DSN; a ``?host=/dir`` Unix socket wins over the netloc host."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return ConnParts(
        host=query.get("host") or parts.hostname or "127.0.0.1",
        port=query.get("port") or (str(parts.port) if parts.port else "5432"),
        user=parts.username or "postgres",
        password=parts.password or "",
        dbname=parts.path.lstrip("/") or "postgres",
    )


@asynccontextmanager
async def bench_database(server_dsn: str) -> AsyncIterator[str]:
    """Create ``bench_<hex>`` on the server, migrate it, yield its DSN, drop it at the end."""
    name = f"bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(server_dsn, name)
    try:
        await eventuali_pg.migrate(dsn)
        yield dsn
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def reset_events(conn: asyncpg.Connection) -> None:
    """Empty the events table and put the global sequence back to 0."""
    await conn.execute(f"TRUNCATE {SCHEMA}.events, {SCHEMA}.streams, {SCHEMA}.pending_events")
    await conn.execute(f"UPDATE {SCHEMA}.global_sequence SET position = 0 WHERE id = 1")
    await conn.execute(f"VACUUM ANALYZE {SCHEMA}.events")


# -- rows for COPY and INSERT --------------------------------------------------------------------


def event_rows(
    start_position: int, count: int, *, events_per_aggregate: int = 1
) -> Iterator[tuple[Any, ...]]:
    """Rows of the events table equal to what ``save`` writes for :class:`BenchEvent` events.

    Positions ``start_position + 1 ..``; a new aggregate every ``events_per_aggregate`` rows.
    """
    now = datetime.now(UTC)
    metadata = "{}"
    aggregate_id = ""
    for i in range(count):
        version = i % events_per_aggregate + 1
        if version == 1:
            aggregate_id = str(uuid.uuid4())
        payload = json.dumps({"amount": i, "label": LABEL}, separators=(",", ":"))
        yield (
            start_position + i + 1,
            uuid.uuid4(),
            aggregate_id,
            "BenchAggregate",
            version,
            "BenchEvent",
            1,
            payload,
            None,
            None,
            None,
            metadata,
            now,
            now,
        )


async def copy_rows(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """COPY ``rows`` into the events table (binary COPY through asyncpg)."""
    await conn.copy_records_to_table("events", schema_name=SCHEMA, columns=COLUMNS, records=rows)


async def fill_events(conn: asyncpg.Connection, count: int, chunk: int = 50_000) -> None:
    """Make the events table hold exactly positions 1..count (COPY in chunks), head = count."""
    have = int(await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.events"))
    head = int(await conn.fetchval(f"SELECT position FROM {SCHEMA}.global_sequence"))
    if have == count and head == count:
        return
    await reset_events(conn)
    for start in range(0, count, chunk):
        rows = list(event_rows(start, min(chunk, count - start), events_per_aggregate=10))
        await copy_rows(conn, rows)
    await conn.execute(f"UPDATE {SCHEMA}.global_sequence SET position = $1 WHERE id = 1", count)
    await conn.execute(f"VACUUM ANALYZE {SCHEMA}.events")


def rate(count: int, seconds: float) -> float:
    """``count`` per second (0 for an empty interval)."""
    return count / seconds if seconds > 0 else 0.0


class Stopwatch:
    """``with Stopwatch() as sw: ...``; then ``sw.seconds``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
