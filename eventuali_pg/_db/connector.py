"""Opening connections by role: a pool for statements, direct sessions for what needs one.

The pool serves every statement (appends, reads, projections' transactions). A *session* is a
dedicated connection outside the pool, for what belongs to one server session: LISTEN (a pool
runs ``UNLISTEN *`` on release) and session advisory locks.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from .errors import translate

APPLICATION_NAME = "eventuali_pg"

Connection: TypeAlias = asyncpg.Connection
Pool: TypeAlias = asyncpg.Pool
Record: TypeAlias = asyncpg.Record

#: asyncpg's default number of prepared statements cached per connection.
DEFAULT_STATEMENT_CACHE_SIZE = 100


class Connector:
    """Knows how to reach one database: ``dsn``, connect timeout, statement cache size."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 10.0,
        statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE,
    ) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.statement_cache_size = statement_cache_size

    async def session(self, *, application_name: str = APPLICATION_NAME) -> Connection:
        """Open one direct connection (raises DatabaseUnavailableError and friends)."""
        try:
            return await asyncpg.connect(
                self.dsn,
                timeout=self.connect_timeout,
                statement_cache_size=self.statement_cache_size,
                server_settings={"application_name": application_name},
            )
        except Exception as exc:
            translated = translate(exc, self.dsn)
            if translated is None:
                raise
            raise translated from exc

    async def pool(self, *, min_size: int, max_size: int) -> Pool:
        """Open the statement pool."""
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=self.connect_timeout,
                statement_cache_size=self.statement_cache_size,
                server_settings={"application_name": APPLICATION_NAME},
                reset=_rollback_if_needed,
            )
        except Exception as exc:
            translated = translate(exc, self.dsn)
            if translated is None:
                raise
            raise translated from exc
        assert pool is not None
        return pool


async def connect(dsn: str, *, timeout: float = 10.0, **kwargs: Any) -> Connection:
    """Open one direct connection to ``dsn`` (for the command line and migrations)."""
    settings = kwargs.pop("server_settings", {})
    connector = Connector(dsn, connect_timeout=timeout)
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    return await connector.session(
        application_name=settings.get("application_name", APPLICATION_NAME)
    )


async def _rollback_if_needed(connection: Connection) -> None:
    # asyncpg's default reset sends one more round trip (UNLISTEN, RESET ALL, ...) on every
    # release. The store's own statements leave no session state behind; connections lent to
    # application code (EventStore.connection) are fully reset before they come back.
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")
