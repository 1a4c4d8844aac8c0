"""Telling a lost database connection apart from a failing handler."""

from __future__ import annotations

from typing import Any

import asyncpg

from ..errors import DatabaseUnavailableError, StoreClosedError

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
