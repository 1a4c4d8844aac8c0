"""Hot-standby replicas: one small pool per replica, opened on first use, and its health.

A replica that cannot be reached, is shut down, or cancels a read because replay conflicts with
it (SQLSTATE 40001 "conflict with recovery", 40P01 for a buffer-pin deadlock) is set aside for a
growing while (doubling up to ``retry_interval`` seconds) and tried again after it; meanwhile
reads go to the primary. Whatever it raised is kept as ``last_error`` for the figures.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from .._dsn import describe_dsn
from .connector import Connection, Pool

logger = logging.getLogger("eventuali_pg.replicas")

T = TypeVar("T")

#: application_name of replica connections, so monitoring on the standby can tell them apart.
REPLICA_APPLICATION_NAME = "eventuali_pg_replica"

#: A replica read that takes longer than this (seconds) counts as a failed replica.
REPLICA_COMMAND_TIMEOUT = 30.0

#: The first wait before a failed replica is tried again (seconds); doubles on each failure.
FIRST_RETRY_DELAY = 0.5

#: SQLSTATEs of a read the standby cancelled because WAL replay needed what it held.
RECOVERY_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})


class ReplicaUnavailable(Exception):
    """A replica read failed or was refused; the caller reads the primary instead."""


class Replica:
    """One hot standby: its pool, its last known head, and when it may be used again."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float,
        statement_cache_size: int,
        max_size: int,
        retry_interval: float,
    ) -> None:
        self.dsn = dsn
        self.label = str(describe_dsn(dsn))
        self._connect_timeout = connect_timeout
        self._statement_cache_size = statement_cache_size
        self._max_size = max_size
        self._retry_interval = retry_interval
        self._pool: Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._failures = 0
        self._usable_at = 0.0
        #: The replica's counter row at the last read, None before any.
        self.head: int | None = None
        #: The primary's head known when ``head`` was read.
        self.primary_head: int | None = None
        self.reads = 0
        self.failures = 0
        self.set_aside_count = 0
        self.last_error: str | None = None

    def usable(self) -> bool:
        """False while the replica is set aside after a failure."""
        return not self._closed and time.monotonic() >= self._usable_at

    def retry_in(self) -> float:
        """Seconds until a set-aside replica is tried again (0 when usable)."""
        return max(0.0, self._usable_at - time.monotonic())

    def set_aside(self, reason: str, *, failed: bool) -> None:
        """Use the primary instead for a while (longer after each consecutive failure)."""
        self._failures += 1
        self.set_aside_count += 1
        if failed:
            self.failures += 1
        self.last_error = reason
        delay = min(self._retry_interval, FIRST_RETRY_DELAY * 2 ** min(self._failures - 1, 16))
        delay = random.uniform(delay / 2, delay)
        self._usable_at = time.monotonic() + delay
        logger.warning(
            "replica %s set aside for %.1fs (%s); reading the primary meanwhile",
            self.label,
            delay,
            reason,
        )

    async def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """``work(connection)`` on one of this replica's connections.

        Raises :class:`ReplicaUnavailable` (after setting the replica aside) on any failure:
        unreachable, shut down, a recovery conflict, a timeout.
        """
        try:
            pool = await self._open()
            async with asyncio.timeout(REPLICA_COMMAND_TIMEOUT), pool.acquire() as connection:
                result = await work(connection)
        except Exception as exc:
            reason = _describe_failure(exc)
            self.set_aside(reason, failed=True)
            raise ReplicaUnavailable(f"replica {self.label}: {reason}") from exc
        if self.usable():  # not set aside by ``work`` itself (a replica too far behind)
            self._failures = 0
        self.reads += 1
        return result

    async def _open(self) -> Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._closed:
                raise ReplicaUnavailable(f"replica {self.label} is closed")
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=self._max_size,
                    timeout=self._connect_timeout,
                    statement_cache_size=self._statement_cache_size,
                    server_settings={"application_name": REPLICA_APPLICATION_NAME},
                )
                assert pool is not None
                self._pool = pool
            return self._pool

    async def close(self) -> None:
        """Close the replica's pool (terminating connections still busy after 5 s)."""
        self._closed = True
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(5.0):
                await pool.close()
        except TimeoutError:
            pool.terminate()


def _describe_failure(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    text = str(exc).strip() or type(exc).__name__
    if sqlstate in RECOVERY_CONFLICT_SQLSTATES:
        return f"read cancelled by recovery ({sqlstate}: {text})"
    if sqlstate:
        return f"{sqlstate}: {text}"
    return f"{type(exc).__name__}: {text}"
