"""The test harness itself: a real server, a fresh migrated database, clean tables per test."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from _server import EmbeddedServer, with_database

Collector = Callable[[], Awaitable[list[dict[str, Any]]]]


async def test_session_database_exists_and_is_migrated(dsn: str, pg_admin_dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        name = await conn.fetchval("SELECT current_database()")
        assert name.startswith("eventuali_test_")
        assert await conn.fetchval("SELECT to_regclass('eventuali.events') IS NOT NULL")
        assert await conn.fetchval("SELECT position FROM eventuali.global_sequence") == 0
    finally:
        await conn.close()
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        assert await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) == 1
    finally:
        await admin.close()


async def _write_marker(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM eventuali.checkpoints") == 0
        assert await conn.fetchval("SELECT position FROM eventuali.global_sequence") == 0
        await conn.execute(
            "INSERT INTO eventuali.checkpoints (subscription_id, position) VALUES ('marker', 7)"
        )
        await conn.execute("UPDATE eventuali.global_sequence SET position = 42")
    finally:
        await conn.close()


async def test_tables_are_clean_first(dsn: str) -> None:
    await _write_marker(dsn)


async def test_tables_are_clean_second(dsn: str) -> None:
    await _write_marker(dsn)


def test_with_database_keeps_socket_and_options() -> None:
    assert (
        with_database("postgresql://postgres:@/postgres?host=/tmp/x y/data", "db1")
        == "postgresql://postgres:@/db1?host=/tmp/x+y/data"
    )
    assert (
        with_database("postgresql://u:p@h:5433/postgres?sslmode=disable&dbname=z", "db2")
        == "postgresql://u:p@h:5433/db2?sslmode=disable"
    )


async def test_unretrieved_task_exception_is_reported(collect_loop_errors: Collector) -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    task = asyncio.ensure_future(boom())
    await asyncio.sleep(0)
    assert task.done()
    del task
    errors = await collect_loop_errors()
    assert [str(e.get("exception")) for e in errors] == ["boom"]


async def test_destroyed_pending_task_is_reported(collect_loop_errors: Collector) -> None:
    loop = asyncio.get_running_loop()
    task = loop.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    # Drop the task without cancelling it, as a leaked background task would be.
    del task
    gc.collect()
    errors = await collect_loop_errors()
    assert any("destroyed but it is pending" in str(e.get("message")) for e in errors), errors


async def test_embedded_server_restarts_on_same_dsn(
    embedded_server: EmbeddedServer, database_dsn: str
) -> None:
    before = embedded_server.dsn
    conn = await asyncpg.connect(database_dsn)
    embedded_server.stop()
    assert not embedded_server.running
    with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
        await conn.fetchval("SELECT 1")
    conn.terminate()
    assert embedded_server.start() == before
    conn = await asyncpg.connect(database_dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
