"""Connections for the projection modules, and telling a lost one apart from a failing handler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg

from ..errors import DatabaseUnavailableError, StoreClosedError

if TYPE_CHECKING:
    from ..store.event_store import EventStore

#: Errors that mean "the database connection is gone", not "this event cannot be handled".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    DatabaseUnavailableError,
    StoreClosedError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def is_connection_error(exc: BaseException, connection: Any = None) -> bool:
    """True when ``exc`` comes from a lost connection (or ``connection`` is now closed)."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    return connection is not None and bool(connection.is_closed())


@contextlib.asynccontextmanager
async def using(store: EventStore, connection: Any) -> AsyncIterator[Any]:
    """``connection`` when the caller passed one (its transaction), else one borrowed from
    ``store`` for the block."""
    if connection is not None:
        yield connection
    else:
        async with store.connection() as conn:
            yield conn
