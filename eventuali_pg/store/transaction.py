"""Events in the application's own transaction (the outbox).

Three ways in, one behaviour:

* ``async with store.transaction() as tx``: the store opens a READ COMMITTED transaction on a
  pooled connection (``tx.connection``) for the application's own SQL; ``await tx.save(...)``
  stages events in it. Leaving the block commits; after the commit the events carry their
  ``global_position`` and ``recorded_at`` and the aggregates are marked committed. An
  exception rolls everything back and propagates; the aggregates keep their events.
* ``await store.save(aggregate, connection=conn)`` inside the caller's ``conn.transaction()``.
* ``await store.save(aggregate, session=session)`` with a SQLAlchemy ``AsyncSession`` on the
  asyncpg driver, inside its transaction.

Staging waits for the aggregates' stream locks (held by any other open transaction that saved
them), checks their versions (a stale one raises :class:`ConcurrencyError` at ``save()``) and
inserts the events into ``pending_events``. The commit trigger of migration 0004 gives them
their positions at commit, so an open transaction holds up only writers of its own aggregates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import telemetry
from .._db import Connection, database_errors
from .._db.sqlalchemy_session import driver_connection
from ..errors import InvalidInputError
from ..models import Aggregate, Event
from .appender import SaveUnit, stage
from .validation import check_aggregates_to_save

if TYPE_CHECKING:
    from .event_store import EventStore

logger = logging.getLogger("eventuali_pg.store")


class IsolationError(InvalidInputError):
    """Events can be saved only inside a READ COMMITTED transaction."""


async def check_caller_transaction(connection: Connection, dsn: str) -> None:
    """Refuse a connection with no open transaction, or one that is not READ COMMITTED."""
    if not connection.is_in_transaction():
        raise InvalidInputError(
            "save(..., connection=conn) needs an open transaction on conn (async with "
            "conn.transaction(): ...); to save in a transaction of its own, call save() "
            "without connection="
        )
    with database_errors(dsn):
        level = await connection.fetchval("SELECT current_setting('transaction_isolation')")
    if level != "read committed":
        raise IsolationError(
            f"events can be saved only in a READ COMMITTED transaction, and this one is "
            f"{str(level).upper()}: their positions are assigned at commit from the global "
            "sequence, which a REPEATABLE READ or SERIALIZABLE snapshot cannot advance. Nothing "
            "was written; open the transaction with isolation='read_committed'"
        )


async def save_in_caller_transaction(
    store: EventStore,
    aggregates: Iterable[Aggregate],
    connection: Connection | None,
    session: Any,
) -> None:
    """``store.save_all(aggregates, connection=...)`` / ``session=...``: stage the events in the
    caller's transaction; the aggregates are marked committed (the library cannot see that
    transaction end: reload them if it rolls back)."""
    if connection is not None and session is not None:
        raise InvalidInputError("pass connection= or session=, not both")
    if session is not None:
        connection = await driver_connection(session)
    assert connection is not None
    await check_caller_transaction(connection, store.dsn)
    with telemetry.save_span(store.schema, transactional=True) as span:
        unit = await store.prepare(check_aggregates_to_save(aggregates), connection)
        if unit is None:
            return
        telemetry.describe_save(span, unit)
        await stage(connection, store.sql, store.dsn, unit, inline=store.inline_projections)
        if unit.error is not None:
            raise unit.error
    # The library cannot see that transaction commit: its events are counted as staged.
    telemetry.count_appended(store.schema, [unit])
    saved = {id(event) for event in unit.events}
    for aggregate in unit.aggregates:
        aggregate._mark_committed(saved)


def pending_events(
    aggregates: Iterable[Aggregate], staged: set[int]
) -> list[tuple[Aggregate, list[Event]]]:
    """Each aggregate's uncommitted events not yet staged in this transaction."""
    result = []
    for aggregate, events in check_aggregates_to_save(aggregates):
        fresh = [event for event in events if id(event) not in staged]
        if fresh:
            result.append((aggregate, fresh))
    return result


class StoreTransaction:
    """One transaction of the store: ``tx.connection`` for the application's SQL,
    ``await tx.save(aggregate)`` for its events. Created by :meth:`EventStore.transaction`."""

    def __init__(self, store: EventStore, connection: Connection) -> None:
        self._store = store
        self._connection = connection
        self._units: list[SaveUnit] = []
        self._staged: set[int] = set()

    @property
    def connection(self) -> Connection:
        """The transaction's asyncpg connection, for the application's own statements."""
        return self._connection

    async def save(self, aggregate: Aggregate) -> None:
        """Stage the aggregate's uncommitted events in this transaction (see the module
        docstring). Raises :class:`ConcurrencyError` if another writer got there first."""
        await self.save_all([aggregate])

    async def save_all(self, aggregates: Iterable[Aggregate]) -> None:
        """Stage the uncommitted events of several aggregates (all or none)."""
        with telemetry.save_span(self._store.schema, transactional=True) as span:
            unit = await self._store.prepare(
                pending_events(aggregates, self._staged), self._connection
            )
            if unit is None:
                return
            telemetry.describe_save(span, unit)
            await stage(
                self._connection,
                self._store.sql,
                self._store.dsn,
                unit,
                inline=self._store.inline_projections,
            )
            if unit.error is not None:
                raise unit.error
        self._units.append(unit)
        self._staged.update(id(event) for event in unit.events)

    async def _committed(self) -> None:
        """Stamp the staged events with the positions their commit gave them."""
        events = [event for unit in self._units for event in unit.events]
        if not events:
            return
        with database_errors(self._store.dsn):
            rows = await self._connection.fetch(
                self._store.sql.positions_of, [event.event_id for event in events]
            )
        stored: dict[Any, Any] = {row["event_id"]: row for row in rows}
        for event in events:
            row = stored[event.event_id]
            event.global_position = row["global_position"]
            event.recorded_at = row["recorded_at"]
        for unit in self._units:
            saved = {id(event) for event in unit.events}
            for aggregate in unit.aggregates:
                aggregate._mark_committed(saved)
        self._store._committed_elsewhere(max(row["global_position"] for row in rows), self._units)


class TransactionScope:
    """The ``async with store.transaction()`` block: commit on success, roll back on error."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._lent: Any = None
        self._transaction: Any = None
        self._tx: StoreTransaction | None = None

    async def __aenter__(self) -> StoreTransaction:
        self._lent = self._store.connection()
        connection = await self._lent.__aenter__()
        try:
            self._transaction = connection.transaction(isolation="read_committed")
            with database_errors(self._store.dsn):
                await self._transaction.start()
        except BaseException as exc:
            await self._lent.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._tx = StoreTransaction(self._store, connection)
        return self._tx

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tx is not None
        try:
            if exc is None:
                with database_errors(self._store.dsn, writing=True):
                    await self._transaction.commit()
                await self._tx._committed()
            else:
                try:
                    await self._transaction.rollback()
                except Exception:  # the block's own error is the one to report
                    logger.warning("rolling back a store transaction failed", exc_info=True)
        finally:
            await self._lent.__aexit__(exc_type, exc, tb)
