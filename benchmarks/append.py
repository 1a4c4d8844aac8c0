"""Append throughput: EventStore.save by one writer and by 64 tasks, against COPY and INSERT.

Every save writes a new aggregate holding k events (k = 1, 10, 100, 1000), built before the clock
starts, so the figures are the store's cost (encoding, the append statement, the commit) and not
the cost of constructing pydantic events. The table is emptied before each workload.
"""

from __future__ import annotations

import asyncio

import asyncpg

from eventuali_pg import EventStore

from ._common import (
    COLUMNS,
    SCHEMA,
    BenchAggregate,
    Settings,
    Stopwatch,
    admin_connect,
    aggregate_with,
    copy_rows,
    event_rows,
    rate,
    reset_events,
)
from ._report import Results

SINGLE = "append.1"
TEN = "append.10"
HUNDRED = "append.100"
THOUSAND = "append.1000"
COPY_THOUSAND = "append.copy_1000"
CONCURRENT = "append.concurrent"
COPY = "append.copy"
TRANSACTION = "append.transaction"
INSERT_FLOOR = "append.insert_floor"


async def run(dsn: str, settings: Settings, results: Results) -> None:
    """Every append figure of one run."""
    admin = await admin_connect(dsn)
    try:
        for key, per_save, saves in (
            (SINGLE, 1, settings.single_saves),
            (TEN, 10, settings.ten_saves),
            (HUNDRED, 100, settings.hundred_saves),
            (THOUSAND, 1000, settings.thousand_saves),
        ):
            await reset_events(admin)
            value = await single_writer(dsn, per_save, saves)
            results.record(key, f"append, 1 writer, {per_save} event(s)/save", "events/s", value)

        await reset_events(admin)
        value = await transactional_writer(dsn, admin, settings.single_saves)
        results.record(
            TRANSACTION,
            "append in store.transaction() with 1 business INSERT, 1 event/save",
            "events/s",
            value,
        )

        await reset_events(admin)
        value = await concurrent_writers(
            dsn,
            settings.concurrent_tasks,
            settings.concurrent_saves_per_task,
            settings.pool_max_size,
        )
        results.record(
            CONCURRENT,
            f"append, {settings.concurrent_tasks} tasks x 1 event/save",
            "events/s",
            value,
        )

        await reset_events(admin)
        value = await copy_ceiling(admin, settings.hundred_saves * 100)
        results.record(COPY, "raw COPY of the same rows (one COPY)", "events/s", value)

        await reset_events(admin)
        value = await copy_ceiling(admin, settings.thousand_saves * 1000, per_aggregate=1000)
        results.record(
            COPY_THOUSAND, "raw COPY of the same rows, 1000 per aggregate", "events/s", value
        )

        await reset_events(admin)
        value = await insert_floor(admin, settings.single_saves)
        results.record(INSERT_FLOOR, "one INSERT + COMMIT per event", "events/s", value)
        await reset_events(admin)  # the references wrote rows without advancing the sequence
    finally:
        await admin.close()
    results.note(
        f"Append: the {settings.concurrent_tasks}-task workload uses one EventStore with "
        f"pool_max_size={settings.pool_max_size} (one connection per task); every save writes a "
        "new aggregate; events are built before the clock starts."
    )


async def single_writer(dsn: str, per_save: int, saves: int) -> float:
    """Events/s of ``saves`` sequential saves of ``per_save`` events each."""
    aggregates = [aggregate_with(per_save) for _ in range(saves)]
    store = await EventStore.create(dsn, pool_min_size=1, pool_max_size=2)
    try:
        await store.save(aggregate_with(1))  # warm the connection and the prepared statement
        with Stopwatch() as sw:
            for aggregate in aggregates:
                await store.save(aggregate)
    finally:
        await store.close()
    return rate(per_save * saves, sw.seconds)


async def transactional_writer(dsn: str, admin: asyncpg.Connection, saves: int) -> float:
    """Events/s of ``saves`` sequential store transactions, each one business row + one event."""
    await admin.execute(
        "CREATE TABLE IF NOT EXISTS bench_orders (id text PRIMARY KEY); TRUNCATE bench_orders"
    )
    aggregates = [aggregate_with(1) for _ in range(saves)]
    store = await EventStore.create(dsn, pool_min_size=1, pool_max_size=2)
    try:
        async with store.transaction() as tx:  # warm the connection and the statements
            await tx.save(aggregate_with(1))
        with Stopwatch() as sw:
            for aggregate in aggregates:
                async with store.transaction() as tx:
                    await tx.connection.execute(
                        "INSERT INTO bench_orders (id) VALUES ($1)", aggregate.id
                    )
                    await tx.save(aggregate)
    finally:
        await store.close()
        await admin.execute("DROP TABLE bench_orders")
    return rate(saves, sw.seconds)


async def concurrent_writers(dsn: str, tasks: int, saves_per_task: int, pool_size: int) -> float:
    """Events/s of ``tasks`` tasks each saving ``saves_per_task`` one-event aggregates."""
    work = [[aggregate_with(1) for _ in range(saves_per_task)] for _ in range(tasks)]
    store = await EventStore.create(dsn, pool_min_size=pool_size, pool_max_size=pool_size)

    async def writer(aggregates: list[BenchAggregate]) -> None:
        for aggregate in aggregates:
            await store.save(aggregate)

    try:
        await asyncio.gather(*(store.save(aggregate_with(1)) for _ in range(tasks)))  # warm up
        with Stopwatch() as sw:
            await asyncio.gather(*(writer(aggregates) for aggregates in work))
    finally:
        await store.close()
    return rate(tasks * saves_per_task, sw.seconds)


async def copy_ceiling(conn: asyncpg.Connection, count: int, per_aggregate: int = 100) -> float:
    """Rows/s of one binary COPY of ``count`` pre-built rows (global_position supplied)."""
    rows = list(event_rows(0, count, events_per_aggregate=per_aggregate))
    with Stopwatch() as sw:
        await copy_rows(conn, rows)
    return rate(count, sw.seconds)


async def insert_floor(conn: asyncpg.Connection, count: int) -> float:
    """Rows/s of one autocommitted ``INSERT`` per event, one after the other (no batching)."""
    rows = list(event_rows(0, count))
    placeholders = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
    statement = await conn.prepare(
        f"INSERT INTO {SCHEMA}.events ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    )
    with Stopwatch() as sw:
        for row in rows:
            await statement.fetch(*row)
    return rate(count, sw.seconds)
