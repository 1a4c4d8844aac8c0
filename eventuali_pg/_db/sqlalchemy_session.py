"""The asyncpg connection under a SQLAlchemy ``AsyncSession``, inside its transaction."""

from __future__ import annotations

from typing import Any

import asyncpg

from ..errors import ConfigurationError


async def driver_connection(session: Any) -> asyncpg.Connection:
    """The asyncpg connection of ``session``'s transaction (begun if it was not yet).

    Raises :class:`ConfigurationError` when ``session`` is not an ``AsyncSession`` on the
    asyncpg driver (``postgresql+asyncpg://...``).
    """
    connection_of = getattr(session, "connection", None)
    if connection_of is None:
        raise ConfigurationError(
            f"session= takes a SQLAlchemy AsyncSession, got {type(session).__name__}"
        )
    connection = await connection_of()  # begins the session's transaction
    raw = await connection.get_raw_connection()
    driver = getattr(raw, "driver_connection", None)
    if not isinstance(driver, asyncpg.Connection):
        raise ConfigurationError(
            "session= needs a SQLAlchemy AsyncSession on the asyncpg driver (an engine made "
            "with create_async_engine('postgresql+asyncpg://...')), got a connection of "
            f"{type(driver).__name__}"
        )
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN with the first statement.
        await connection.exec_driver_sql("SELECT 1")
    return driver
