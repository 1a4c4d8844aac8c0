"""The append workloads through other Python event stores, on the same server and database.

* ``eventsourcing`` (PyPI ``eventsourcing[postgres]``): its ``Application`` on the PostgreSQL
  persistence module (psycopg 3, synchronous, connection pool). Its saves lock the events table
  (``LOCK TABLE ... IN EXCLUSIVE MODE``) so that notification ids are commit-ordered, like our
  positions. Being synchronous, its concurrent workload runs in 64 threads.
* ``eventsource-py`` (PyPI ``eventsource-py``; only 0.8.1 installs on Python < 3.13): its
  ``PostgreSQLEventStore`` (SQLAlchemy async over asyncpg), one ``INSERT`` per event, positions
  from a ``BIGSERIAL`` (not commit-ordered). Its concurrent workload runs as 64 asyncio tasks.

Each save writes a new aggregate with k events built before the clock starts, as in
:mod:`benchmarks.append`.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg

from ._common import LABEL, Settings, Stopwatch, dsn_parts, rate
from ._report import Results

ES_SINGLE = "peers.eventsourcing.1"
ES_TEN = "peers.eventsourcing.10"
ES_HUNDRED = "peers.eventsourcing.100"
ES_CONCURRENT = "peers.eventsourcing.concurrent"
EP_SINGLE = "peers.eventsource_py.1"
EP_TEN = "peers.eventsource_py.10"
EP_HUNDRED = "peers.eventsource_py.100"
EP_CONCURRENT = "peers.eventsource_py.concurrent"


async def run(dsn: str, settings: Settings, results: Results) -> None:
    """Both peers, if installed (a missing one is noted, not an error)."""
    try:
        await run_eventsourcing(dsn, settings, results)
    except ImportError as exc:
        results.note(f"eventsourcing not measured: {exc} (pip install 'eventuali-pg[bench]')")
    try:
        await run_eventsource_py(dsn, settings, results)
    except ImportError as exc:
        results.note(f"eventsource-py not measured: {exc} (pip install eventsource-py)")


# -- eventsourcing ---------------------------------------------------------------------------

_classes: dict[str, Any] = {}


def _eventsourcing_classes() -> tuple[Any, Any]:
    """The aggregate and application classes, defined once (eventsourcing registers topics)."""
    if "eventsourcing" not in _classes:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event

        class BenchCounter(Aggregate):
            @event("Started")
            def __init__(self, amount: int, label: str) -> None:
                self.total = amount

            @event("Ticked")
            def tick(self, amount: int, label: str) -> None:
                self.total += amount

        class BenchApp(Application[uuid.UUID]):
            name = "BenchApp"

        _classes["eventsourcing"] = (BenchCounter, BenchApp)
    classes: tuple[Any, Any] = _classes["eventsourcing"]
    return classes


def _eventsource_py_event() -> Any:
    """The eventsource-py event class, defined once."""
    if "eventsource_py" not in _classes:
        from eventsource.domain.event import DomainEvent

        class BenchTicked(DomainEvent):
            aggregate_type: str = "Bench"
            amount: int
            label: str

        _classes["eventsource_py"] = BenchTicked
    return _classes["eventsource_py"]


async def run_eventsourcing(dsn: str, settings: Settings, results: Results) -> None:
    BenchCounter, BenchApp = _eventsourcing_classes()
    parts = dsn_parts(dsn)
    tasks = settings.concurrent_tasks

    def make_app() -> Any:
        return BenchApp(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": parts.dbname,
                "POSTGRES_HOST": parts.host,
                "POSTGRES_PORT": parts.port,
                "POSTGRES_USER": parts.user,
                "POSTGRES_PASSWORD": parts.password,
                "POSTGRES_POOL_SIZE": str(tasks),
                "POSTGRES_MAX_OVERFLOW": "0",
                "CREATE_TABLE": "y",
            }
        )

    def counter_with(events: int) -> Any:
        counter = BenchCounter(amount=0, label=LABEL)
        for i in range(1, events):
            counter.tick(amount=i, label=LABEL)
        return counter

    def single(per_save: int, saves: int) -> float:
        app = make_app()
        try:
            counters = [counter_with(per_save) for _ in range(saves)]
            app.save(counter_with(1))
            with Stopwatch() as sw:
                for counter in counters:
                    app.save(counter)
            return rate(per_save * saves, sw.seconds)
        finally:
            app.close()

    def concurrent(saves_per_task: int) -> float:
        app = make_app()
        try:
            work = [[counter_with(1) for _ in range(saves_per_task)] for _ in range(tasks)]

            def writer(counters: list[Any]) -> None:
                for counter in counters:
                    app.save(counter)

            with ThreadPoolExecutor(max_workers=tasks) as pool:
                list(pool.map(lambda _: app.save(counter_with(1)), range(tasks)))  # warm up
                with Stopwatch() as sw:
                    list(pool.map(writer, work))
            return rate(tasks * saves_per_task, sw.seconds)
        finally:
            app.close()

    for key, per_save, saves in (
        (ES_SINGLE, 1, settings.single_saves),
        (ES_TEN, 10, settings.ten_saves),
        (ES_HUNDRED, 100, settings.hundred_saves),
    ):
        value = await asyncio.to_thread(single, per_save, saves)
        await _truncate(dsn, "public.benchapp_events")
        results.record(key, f"eventsourcing, {per_save} event(s)/save", "events/s", value)
    value = await asyncio.to_thread(concurrent, settings.concurrent_saves_per_task)
    await _truncate(dsn, "public.benchapp_events")
    results.record(
        ES_CONCURRENT, f"eventsourcing, {tasks} threads x 1 event/save", "events/s", value
    )
    results.note(
        f"eventsourcing: Application with PERSISTENCE_MODULE=eventsourcing.postgres, "
        f"POSTGRES_POOL_SIZE={tasks}; its concurrent workload runs in {tasks} threads "
        "(it is synchronous). A save of k events counts the creation event as one of the k."
    )


# -- eventsource-py ---------------------------------------------------------------------------


async def run_eventsource_py(dsn: str, settings: Settings, results: Results) -> None:
    from eventsource.adapters.postgresql import PostgreSQLEventStore
    from eventsource.domain import StreamId
    from eventsource.ports import ExpectedVersion
    from sqlalchemy.ext.asyncio import create_async_engine

    BenchTicked = _eventsource_py_event()

    def stream_with(events: int) -> tuple[Any, list[Any]]:
        aggregate_id = uuid.uuid4()
        batch = [
            BenchTicked(aggregate_id=aggregate_id, aggregate_version=i + 1, amount=i, label=LABEL)
            for i in range(events)
        ]
        return StreamId(aggregate_id=aggregate_id, category="Bench"), batch

    url = "postgresql+asyncpg://" + dsn.split("://", 1)[1]
    tasks = settings.concurrent_tasks

    async def with_store(body: Any) -> float:
        engine = create_async_engine(url, pool_size=tasks, max_overflow=0)
        store = PostgreSQLEventStore(engine, create_schema=True)
        try:
            warm_stream, warm = stream_with(1)
            await store.append(warm_stream, warm, ExpectedVersion.no_stream())
            value: float = await body(store)
            return value
        finally:
            await engine.dispose()
            await _truncate(dsn, "public.events")

    for key, per_save, saves in (
        (EP_SINGLE, 1, settings.single_saves),
        (EP_TEN, 10, settings.ten_saves),
        (EP_HUNDRED, 100, settings.hundred_saves),
    ):
        work = [stream_with(per_save) for _ in range(saves)]

        async def single(
            store: Any, work: list[tuple[Any, list[Any]]] = work, per_save: int = per_save
        ) -> float:
            with Stopwatch() as sw:
                for stream, batch in work:
                    await store.append(stream, batch, ExpectedVersion.no_stream())
            return rate(per_save * len(work), sw.seconds)

        results.record(
            key, f"eventsource-py, {per_save} event(s)/save", "events/s", await with_store(single)
        )

    per_task = settings.concurrent_saves_per_task
    concurrent_work = [[stream_with(1) for _ in range(per_task)] for _ in range(tasks)]

    async def concurrent(store: Any) -> float:
        async def writer(items: list[tuple[Any, list[Any]]]) -> None:
            for stream, batch in items:
                await store.append(stream, batch, ExpectedVersion.no_stream())

        with Stopwatch() as sw:
            await asyncio.gather(*(writer(items) for items in concurrent_work))
        return rate(tasks * per_task, sw.seconds)

    results.record(
        EP_CONCURRENT,
        f"eventsource-py, {tasks} tasks x 1 event/save",
        "events/s",
        await with_store(concurrent),
    )
    results.note(
        f"eventsource-py: PostgreSQLEventStore(create_schema=True) on a SQLAlchemy asyncpg engine "
        f"with pool_size={tasks}; {tasks} asyncio tasks for the concurrent workload."
    )


async def _truncate(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        if exists:
            await conn.execute(f"TRUNCATE {table}")
    finally:
        await conn.close()
