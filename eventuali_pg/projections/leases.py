"""Single active consumer: a PostgreSQL session advisory lock held on a dedicated connection.

Whoever holds the lock runs the subscription; the others poll for it. The lock belongs to the
holder's server session, so it is released the moment that session ends: a clean close, a
crash, ``kill -9`` of the process (the server sees the socket close), or the connection being
terminated. The holder watches its connection (termination callback plus a heartbeat under a
timeout) and stops processing as soon as it is gone, because another process may take over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .._db import Connector, close_or_terminate, database_errors, watch_connection
from ..errors import DatabaseUnavailableError, EventualiError
from ..stream.backoff import Backoff
from .sql import ProjectionSql

logger = logging.getLogger("eventuali_pg.projections")


class LeaseLost(Exception):
    """The holder's lock connection is gone; another process may hold the lease now."""


class AdvisoryLease:
    """An exclusive, named lease backed by ``pg_try_advisory_lock`` (64-bit key hashed from the
    name by ``hashtextextended`` in SQL)."""

    def __init__(
        self,
        connector: Connector,
        name: str,
        *,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 2.0,
        heartbeat_timeout: float = 5.0,
    ) -> None:
        self._connector = connector
        self._name = name
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._connection: Any = None
        self._terminated = asyncio.Event()
        self._held = False

    @property
    def name(self) -> str:
        """The lease's name (hashed into the advisory lock key)."""
        return self._name

    @property
    def held(self) -> bool:
        """True while this process holds the lease."""
        return self._held

    async def acquire(self) -> None:
        """Wait until this process holds the lease (polling every ``poll_interval`` seconds;
        reconnecting with backoff when the database is unreachable)."""
        backoff = Backoff(initial=0.1, maximum=5.0)
        while True:
            try:
                connection = self._connection
                if connection is None or connection.is_closed():
                    connection = await self._connect()
                with database_errors(self._connector.dsn):
                    locked = await connection.fetchval(ProjectionSql.try_lock(), self._name)
                if locked:
                    self._held = True
                    logger.info("lease %r acquired", self._name)
                    return
                backoff.reset()
                delay = self._poll_interval
            except DatabaseUnavailableError as exc:
                await self._drop()
                delay = backoff.next_delay()
                logger.warning("lease %r: cannot reach the database (%s)", self._name, exc)
            except EventualiError as exc:  # refused (a privilege, a limit): say so, keep trying
                await self._drop()
                delay = backoff.next_delay()
                logger.error("lease %r: the database refused the lock (%s)", self._name, exc)
            await asyncio.sleep(delay)

    async def check_session(self) -> None:
        """Raise :class:`SessionUnavailableError` now if the lock connection would go through a
        transaction-mode pooler (where a session lock is not held), rather than at acquire."""
        connection = await self._connector.direct_session(purpose=f"hold lease {self._name!r}")
        await close_or_terminate(connection, 2.0)

    async def watch(self) -> None:
        """Return never while the lease is held; raise :class:`LeaseLost` when it is lost."""
        connection = self._connection
        if not self._held or connection is None:
            raise LeaseLost(f"lease {self._name!r} is not held")
        reason = await watch_connection(
            connection,
            self._terminated,
            interval=self._heartbeat_interval,
            timeout=self._heartbeat_timeout,
        )
        raise LeaseLost(f"lease {self._name!r}: lock {reason}")

    async def release(self) -> None:
        """Give the lease up (closing the lock connection releases the lock). Idempotent."""
        if self._held:
            logger.info("lease %r released", self._name)
        await self._drop()

    async def _connect(self) -> Any:
        self._terminated = asyncio.Event()
        terminated = self._terminated
        connection = await self._connector.direct_session(purpose=f"hold lease {self._name!r}")
        connection.add_termination_listener(lambda _conn: terminated.set())
        self._connection = connection
        return connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._held = False
        await close_or_terminate(connection, 2.0)
