"""Direct sessions (LISTEN, session locks): noticing that one died, and closing one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg


async def watch_connection(
    connection: asyncpg.Connection,
    terminated: asyncio.Event,
    *,
    interval: float,
    timeout: float,
    on_heartbeat: Callable[[], None] | None = None,
) -> str:
    """Wait until ``connection`` is dead; return why.

    Dead means ``terminated`` was set (by a termination listener) or a ``SELECT 1`` sent every
    ``interval`` seconds failed or took longer than ``timeout`` (a silent network).
    """
    while True:
        try:
            async with asyncio.timeout(interval):
                await terminated.wait()
            return "connection terminated"
        except TimeoutError:
            pass
        try:
            async with asyncio.timeout(timeout):
                await connection.fetchval("SELECT 1")
        except Exception as exc:  # whatever the failure, the connection is unusable
            return f"heartbeat failed: {type(exc).__name__} {exc}".strip()
        if on_heartbeat is not None:
            on_heartbeat()


async def close_or_terminate(connection: asyncpg.Connection | None, timeout: float) -> None:
    """Close ``connection`` gracefully within ``timeout`` seconds, else abort it."""
    if connection is None or connection.is_closed():
        return
    try:
        async with asyncio.timeout(timeout):
            await connection.close()
    except Exception:  # a connection that cannot close cleanly is aborted
        connection.terminate()
