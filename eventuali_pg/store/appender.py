"""The appender: runs the append statement for a group of save units on a given connection.

A *save unit* is what one ``save``/``save_all`` call asks for: its aggregates, the version each
is expected to be at, and their encoded events. :func:`append` writes a group of units in one
statement and settles each unit: committed (with its first position and commit time) or failed
with its own error. A unit the server refuses (a stale version, a duplicate event id, a value
PostgreSQL cannot store) fails alone: the other units of the group are written without it.

The statement is its own transaction unless ``connection`` is inside one; then the outcome is
final only once that transaction commits, which the caller owns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from .._db import database_errors, is_lost_connection, translate
from ..codec import EncodedBatch
from ..errors import ConcurrencyError, EventualiError, InvalidInputError
from ..models import Aggregate, Event
from .inline import InlineProjection, run_inline
from .sql import StoreSql


@dataclass(eq=False)
class SaveUnit:
    """One save call's aggregates and encoded events, and, once appended, its outcome."""

    aggregates: list[Aggregate]
    expected_versions: list[int]
    events: list[Event]
    batch: EncodedBatch
    first_position: int = 0
    recorded_at: datetime | None = None
    error: BaseException | None = None
    done: bool = False
    aggregate_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.aggregate_ids = [aggregate.id for aggregate in self.aggregates]

    @property
    def committed(self) -> bool:
        """True once the unit's events are written (final when their transaction commits)."""
        return self.done and self.error is None

    def succeed(self, first_position: int, recorded_at: datetime) -> None:
        """Record that the unit's events were written from ``first_position`` on."""
        self.first_position = first_position
        self.recorded_at = recorded_at
        self.done = True

    def fail(self, error: BaseException) -> None:
        """Record that nothing of this unit was written, and why."""
        self.error = error
        self.done = True

    def stamp(self) -> None:
        """Give each event its global position and commit time, and mark exactly these events
        committed on their aggregates (events applied since stay uncommitted)."""
        assert self.recorded_at is not None
        for position, event in enumerate(self.events, start=self.first_position):
            event.global_position = position
            event.recorded_at = self.recorded_at
        saved = {id(event) for event in self.events}
        for aggregate in self.aggregates:
            aggregate._mark_committed(saved)


def append_arguments(units: list[SaveUnit], channel: str) -> tuple[Any, ...]:
    """Parameters of :attr:`StoreSql.append` for ``units`` (unit numbers are list indexes)."""
    aggregate_units: list[int] = []
    aggregate_ids: list[str] = []
    expected: list[int] = []
    aggregate_types: list[str] = []
    new_versions: list[int] = []
    event_units: list[int] = []
    columns: list[list[Any]] = [[] for _ in range(13 - 1)]
    for index, unit in enumerate(units):
        counts = Counter(unit.batch.aggregate_ids)
        types = dict(zip(unit.batch.aggregate_ids, unit.batch.aggregate_types, strict=True))
        for aggregate_id, version in zip(unit.aggregate_ids, unit.expected_versions, strict=True):
            aggregate_units.append(index)
            aggregate_ids.append(aggregate_id)
            expected.append(version)
            aggregate_types.append(types.get(aggregate_id, ""))
            new_versions.append(version + counts[aggregate_id])
        event_units += [index] * len(unit.batch)
        for target, values in zip(columns, unit.batch.columns(), strict=True):
            target += values
    return (
        aggregate_units,
        aggregate_ids,
        expected,
        aggregate_types,
        new_versions,
        event_units,
        *columns,
        channel,
    )


@dataclass(frozen=True)
class AppendResult:
    """What one append statement did: the head after it (None when nothing was written), the
    units it wrote, and the busy units it left alone (an aggregate held by an open transaction;
    to be appended again with the statement that waits)."""

    head: int | None
    committed: list[SaveUnit]
    busy: list[SaveUnit] = field(default_factory=list)


async def append(
    connection: asyncpg.Connection,
    sql: StoreSql,
    dsn: str,
    units: list[SaveUnit],
    *,
    wait: bool = False,
) -> AppendResult:
    """Write ``units`` on ``connection``; settle every unit that is not busy (see the module
    docstring). With ``wait`` the statement waits for aggregates held by open transactions
    (and no unit is busy); without, such units come back as ``busy``, unsettled.

    A lost connection is raised (as :class:`DatabaseUnavailableError`, outcome unknown) and
    settles nothing: the caller decides for the whole group.
    """
    statement = sql.append_waiting if wait else sql.append
    with database_errors(dsn, writing=True):
        try:
            row = await connection.fetchrow(statement, *append_arguments(units, sql.channel))
        except asyncpg.PostgresError as exc:
            if is_lost_connection(exc) or connection.is_in_transaction():
                # Inside the caller's transaction the statement cannot be re-run alone: the
                # transaction is aborted, and the caller's save gets the error.
                raise
            if len(units) > 1:
                # One unit's refusal must not fail the others: judge each save on its own.
                heads: list[int] = []
                committed: list[SaveUnit] = []
                busy: list[SaveUnit] = []
                for unit in units:
                    result = await append(connection, sql, dsn, [unit], wait=wait)
                    if result.head is not None:
                        heads.append(result.head)
                    committed += result.committed
                    busy += result.busy
                return AppendResult(max(heads) if heads else None, committed, busy)
            units[0].fail(await _refusal(connection, sql, dsn, units[0], exc))
            return AppendResult(None, [])
    assert row is not None
    rejected = set(row["rejected"])
    left_alone = rejected | set(row["busy"])
    accepted = [unit for index, unit in enumerate(units) if index not in left_alone]
    head = row["head"]
    position = (head or 0) - sum(len(unit.batch) for unit in accepted) + 1
    for unit in accepted:
        unit.succeed(position, row["recorded_at"])
        position += len(unit.events)
    for index in sorted(rejected):
        units[index].fail(await _concurrency_error(connection, sql, dsn, units[index]))
    return AppendResult(head, accepted, [units[index] for index in sorted(row["busy"])])


async def _refusal(
    connection: asyncpg.Connection,
    sql: StoreSql,
    dsn: str,
    unit: SaveUnit,
    exc: asyncpg.PostgresError,
) -> EventualiError:
    if isinstance(exc, asyncpg.UniqueViolationError):
        constraint = exc.constraint_name
        if constraint == "events_event_id_key":
            return InvalidInputError(
                f"an event id of this save is already stored ({exc.detail}); every event needs "
                "a new event_id"
            )
        if constraint == "events_pkey":
            return EventualiError(
                f"global position already taken ({exc.detail}): rows were written to "
                f"{sql.schema}.events without advancing {sql.schema}.global_sequence. Write "
                "events only through EventStore, and set the sequence row to the highest "
                "global_position before saving again"
            )
        return await _concurrency_error(connection, sql, dsn, unit)
    translated = translate(exc, dsn, writing=True)
    assert translated is not None  # every PostgresError has a translation
    return translated


async def _concurrency_error(
    connection: asyncpg.Connection, sql: StoreSql, dsn: str, unit: SaveUnit
) -> ConcurrencyError:
    ids = unit.aggregate_ids
    with database_errors(dsn):
        rows = await connection.fetch(sql.aggregate_versions, ids)
    actual = {row["aggregate_id"]: int(row["version"]) for row in rows}
    pairs = list(zip(ids, unit.expected_versions, strict=True))
    aggregate_id, expected_version = next(
        ((i, v) for i, v in pairs if actual.get(i, 0) != v), pairs[0]
    )
    actual_version = actual.get(aggregate_id, 0)
    return ConcurrencyError(
        f"aggregate {aggregate_id!r} was expected at version {expected_version} but is at "
        f"version {actual_version}: another writer saved first. Nothing was written; reload "
        "the aggregate, apply the command again and save",
        aggregate_id=aggregate_id,
        expected_version=expected_version,
        actual_version=actual_version,
    )


async def stage(
    connection: asyncpg.Connection,
    sql: StoreSql,
    dsn: str,
    unit: SaveUnit,
    *,
    inline: Sequence[InlineProjection] = (),
    wait: bool = True,
) -> bool:
    """Save ``unit`` inside the transaction open on ``connection`` (see :attr:`StoreSql.stage`):
    take its aggregates' stream locks, check their versions, insert its events as pending, and
    run the inline projections on them (in a savepoint, so a failing handler undoes this save
    alone and its exception propagates).

    On success the unit is *staged*, not settled: its events get positions when the transaction
    commits. A stale version fails it with :class:`ConcurrencyError`. With ``wait=False`` an
    aggregate held by another open transaction makes the unit busy: False is returned and
    nothing is staged.
    """
    if not inline:
        return await _stage_statement(connection, sql, dsn, unit, wait)
    async with connection.transaction():  # a savepoint
        if not await _stage_statement(connection, sql, dsn, unit, wait):
            return False
        if unit.error is None:
            await run_inline(inline, unit.events, connection)
    return True


async def _stage_statement(
    connection: asyncpg.Connection, sql: StoreSql, dsn: str, unit: SaveUnit, wait: bool
) -> bool:
    statement = sql.stage if wait else sql.stage_trying
    with database_errors(dsn, writing=True):
        row = await connection.fetchrow(statement, *append_arguments([unit], sql.channel))
    assert row is not None
    if row["busy"]:
        return False
    if row["rejected"]:
        unit.fail(await _concurrency_error(connection, sql, dsn, unit))
    return True


async def append_with_inline(
    connection: asyncpg.Connection,
    sql: StoreSql,
    dsn: str,
    units: list[SaveUnit],
    inline: Sequence[InlineProjection],
    *,
    wait: bool = False,
) -> AppendResult:
    """Append ``units`` in one transaction of their own on ``connection``, each staged in a
    savepoint with the inline projections run on its events; positions come from the commit.

    A unit whose save or handler fails is failed alone (the handler's exception is its error);
    busy units (``wait=False``) come back unsettled; a lost connection is raised.
    """
    staged: list[SaveUnit] = []
    busy: list[SaveUnit] = []
    with database_errors(dsn, writing=True):
        async with connection.transaction():
            for unit in units:
                try:
                    if not await stage(connection, sql, dsn, unit, inline=inline, wait=wait):
                        busy.append(unit)
                        continue
                except Exception as exc:
                    if is_lost_connection(exc) or connection.is_closed():
                        raise
                    unit.fail(exc)
                    continue
                if unit.error is None:
                    staged.append(unit)
        if not staged:
            return AppendResult(None, [], busy)
        rows = await connection.fetch(
            sql.positions_of, [event.event_id for unit in staged for event in unit.events]
        )
    stored = {row["event_id"]: row for row in rows}
    for unit in staged:
        first = stored[unit.events[0].event_id]
        unit.succeed(first["global_position"], first["recorded_at"])
    return AppendResult(max(row["global_position"] for row in rows), staged, busy)
