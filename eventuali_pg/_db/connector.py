"""Opening connections by role: a pool for statements, direct sessions for what needs one.

The pool serves every statement (appends, reads, projections' transactions). A *session* is a
dedicated connection outside the pool. A *direct session* is one that keeps its server session
for its whole life, for LISTEN (a pool runs ``UNLISTEN *`` on release) and session advisory
locks: on ``listen_dsn`` when one is given (``dsn`` may then point at PgBouncer in transaction
mode), else on ``dsn``, after checking that no pooler stands in between.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from .._dsn import describe_dsn
from ..errors import SessionUnavailableError
from .errors import translate

APPLICATION_NAME = "eventuali_pg"

Connection: TypeAlias = asyncpg.Connection
Pool: TypeAlias = asyncpg.Pool
Record: TypeAlias = asyncpg.Record

#: asyncpg's default number of prepared statements cached per connection.
DEFAULT_STATEMENT_CACHE_SIZE = 100


class Connector:
    """Knows how to reach one database: ``dsn``, connect timeout, statement cache size, and
    ``listen_dsn`` (a direct or session-mode URL for what needs a server session)."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 10.0,
        statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE,
        listen_dsn: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.statement_cache_size = statement_cache_size
        self.listen_dsn = listen_dsn
        self._dsn_is_direct = False

    async def session(self, *, application_name: str = APPLICATION_NAME) -> Connection:
        """Open one connection outside the pool on ``dsn``, for transactions of its own (raises
        DatabaseUnavailableError and friends). Behind a transaction-mode pooler it keeps no
        session state between transactions: use :meth:`direct_session` for that."""
        return await self._connect(self.dsn, application_name)

    async def direct_session(
        self, *, purpose: str, application_name: str = APPLICATION_NAME
    ) -> Connection:
        """Open one connection that keeps its server session (LISTEN, session locks).

        On ``listen_dsn`` when given. Otherwise on ``dsn``, checked once: a pooler (PgBouncer
        answers with a backend process id of its own, never the server's) raises
        :class:`SessionUnavailableError`, since ``purpose`` would silently not work there.
        """
        if self.listen_dsn is not None:
            return await self._connect(self.listen_dsn, application_name)
        connection = await self._connect(self.dsn, application_name)
        if self._dsn_is_direct:
            return connection
        try:
            backend = await connection.fetchval("SELECT pg_backend_pid()")
        except BaseException:
            connection.terminate()
            raise
        if backend != connection.get_server_pid():
            connection.terminate()
            raise SessionUnavailableError(
                f"cannot {purpose} through {describe_dsn(self.dsn)}: it is a connection pooler "
                "(PgBouncer), which hands the server session to other clients between "
                "transactions, so this would silently not work. Pass listen_dsn= (a direct or "
                "session-mode URL of the same database; CLI: --listen-dsn), or use notify=False "
                "to poll instead of LISTEN"
            )
        self._dsn_is_direct = True
        return connection

    async def _connect(self, dsn: str, application_name: str) -> Connection:
        try:
            return await asyncpg.connect(
                dsn,
                timeout=self.connect_timeout,
                statement_cache_size=self.statement_cache_size,
                server_settings={"application_name": application_name},
            )
        except Exception as exc:
            translated = translate(exc, dsn)
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


async def connect(
    dsn: str,
    *,
    timeout: float = 10.0,
    statement_cache_size: int | None = None,
    **kwargs: Any,
) -> Connection:
    """Open one direct connection to ``dsn`` (for the command line and migrations)."""
    settings = kwargs.pop("server_settings", {})
    connector = Connector(
        dsn,
        connect_timeout=timeout,
        statement_cache_size=(
            DEFAULT_STATEMENT_CACHE_SIZE if statement_cache_size is None else statement_cache_size
        ),
    )
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
