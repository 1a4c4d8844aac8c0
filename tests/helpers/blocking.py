"""Holding the global sequence row from another session, so the append in flight waits for it
(and every save behind it stays queued) for as long as a test needs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

WAIT = 30.0


async def appends_waiting_for_a_lock(conn: asyncpg.Connection) -> int:
    """Library sessions whose statement waits for a lock right now."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'eventuali_pg' AND wait_event_type = 'Lock'"
        )
    )


@contextlib.asynccontextmanager
async def holding_sequence(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Lock the global sequence row for the block; the yielded admin connection can watch the
    library's sessions."""
    holder = await asyncpg.connect(dsn, server_settings={"application_name": "test_holder"})
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM eventuali.global_sequence FOR UPDATE")
        try:
            yield holder
        finally:
            await transaction.rollback()
    finally:
        await holder.close()


async def until_an_append_waits(watcher: asyncpg.Connection) -> None:
    """Return once a library session waits for a lock (the held row)."""
    async with asyncio.timeout(WAIT):
        while not await appends_waiting_for_a_lock(watcher):  # noqa: ASYNC110 - server state
            await asyncio.sleep(0.01)
