"""Opening asyncpg connections and pools, and turning driver failures into library errors.

This and :mod:`eventuali_pg.store.event_store` are the places that talk to asyncpg directly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import asyncpg

from .._dsn import describe_dsn
from ..errors import DatabaseUnavailableError

APPLICATION_NAME = "eventuali_pg"

_UNREACHABLE = (
    OSError,
    socket.gaierror,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)


def unreachable(dsn: str, exc: BaseException) -> DatabaseUnavailableError:
    """A :class:`DatabaseUnavailableError` naming the target of ``dsn`` and the cause."""
    target = describe_dsn(dsn)
    reason = str(exc) or type(exc).__name__
    return DatabaseUnavailableError(
        f"cannot connect to PostgreSQL at {target}: {reason}. Check that the server is running "
        "and accepts connections there, and that the DSN's user, password and database are right"
    )


async def connect(dsn: str, *, timeout: float = 10.0, **kwargs: Any) -> asyncpg.Connection:
    """Open one connection, translating connection failures into DatabaseUnavailableError."""
    settings = {"application_name": APPLICATION_NAME, **kwargs.pop("server_settings", {})}
    try:
        return await asyncpg.connect(dsn, timeout=timeout, server_settings=settings, **kwargs)
    except _UNREACHABLE as exc:
        raise unreachable(dsn, exc) from exc


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, timeout: float = 10.0
) -> asyncpg.Pool:
    """Open a pool, translating connection failures into DatabaseUnavailableError."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            server_settings={"application_name": APPLICATION_NAME},
            reset=_rollback_if_needed,
        )
    except _UNREACHABLE as exc:
        raise unreachable(dsn, exc) from exc
    assert pool is not None
    return pool


async def _rollback_if_needed(connection: asyncpg.Connection) -> None:
    # asyncpg's default reset sends one more round trip (UNLISTEN, RESET ALL, ...) on every
    # release. The store's own statements leave no session state behind; connections lent to
    # application code (EventStore.connection) are fully reset before they come back.
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


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
