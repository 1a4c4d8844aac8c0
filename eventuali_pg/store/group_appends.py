"""The statements the save writer runs: one coalesced group on a pooled connection, or one save
that must wait for an open transaction's stream locks on a session of its own.

:class:`~eventuali_pg.store.writer.AppendWriter` decides *when* to append and settles each
caller; this module decides *where* (which connection) and *how* (with the store's inline
projections, in a span).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .. import telemetry
from .._db import Connection, Connector, Pool, close_or_terminate, database_errors
from . import statistics
from .appender import AppendResult, SaveUnit, append, append_with_inline
from .inline import InlineProjection
from .sql import StoreSql

#: Saves waiting on their own session for an open transaction's stream locks, at most; more
#: wait for one of these sessions (each is a backend on the server).
MAX_WAITING_SESSIONS = 8


class GroupAppender:
    """Runs appends for one store: ``inline`` is the store's own (live) list of inline
    projections, read at each append."""

    def __init__(
        self,
        connector: Connector,
        pool: Pool,
        sql: StoreSql,
        inline: Sequence[InlineProjection],
    ) -> None:
        self._connector = connector
        self._pool = pool
        self._sql = sql
        self._inline = inline
        self._waiting_sessions = asyncio.Semaphore(MAX_WAITING_SESSIONS)

    async def run_group(self, units: list[SaveUnit]) -> AppendResult:
        """Append a coalesced group on a pooled connection; busy units come back unsettled."""
        dsn = self._connector.dsn
        with telemetry.group_span(self._sql.schema, units), database_errors(dsn, writing=True):
            async with self._pool.acquire() as connection:
                result = await self._append_on(connection, units, wait=False)
                if result.head is not None:
                    # At most the group's event count below the head this group started from.
                    written = sum(len(unit.batch) for unit in units)
                    if statistics.crossed(result.head - written, result.head):
                        await statistics.refresh(connection, self._sql)
                return result

    async def run_waiting(self, unit: SaveUnit) -> AppendResult:
        """Append one save that waits for the stream locks an open transaction holds."""
        # On a session of its own, not a pooled connection: a save waiting for someone's open
        # transaction must not take a connection the other saves and reads need.
        async with self._waiting_sessions:
            with telemetry.group_span(self._sql.schema, [unit]):
                connection = await self._connector.session()
                try:
                    return await self._append_on(connection, [unit], wait=True)
                finally:
                    await close_or_terminate(connection, 1.0)

    async def _append_on(
        self, connection: Connection, units: list[SaveUnit], *, wait: bool
    ) -> AppendResult:
        dsn = self._connector.dsn
        if self._inline:
            return await append_with_inline(
                connection, self._sql, dsn, units, self._inline, wait=wait
            )
        return await append(connection, self._sql, dsn, units, wait=wait)
