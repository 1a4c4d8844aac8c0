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

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any

from opentelemetry.trace import SpanContext

from .._db import (
    Connection,
    ServerError,
    database_errors,
    is_lost_connection,
    missing_partition,
    server_detail,
    translate,
    unique_violation,
)
from ..codec import EncodedBatch
from ..errors import (
    ConcurrencyError,
    EventualiError,
    InvalidInputError,
    RetryMismatchError,
    SubjectForgottenError,
)
from ..models import Aggregate, Event
from .inline import InlineProjection, run_inline
from .keys import forgotten_error
from .sql import StoreSql

logger = logging.getLogger("eventuali_pg.store")

#: Appends tried again after creating partitions for them (another writer may take the room).
PARTITION_ATTEMPTS = 5


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
    #: Set when the unit's events were already stored (an idempotent retry): their positions.
    stored: list[tuple[int, datetime]] | None = None
    #: The save's span (when one is recording), for the link from the append statement's span.
    span_context: SpanContext | None = None
    #: (subject id, key generation) of every subject key its personal fields were encrypted
    #: with; the append checks each still exists (see :mod:`.keys`).
    subjects: list[tuple[str, int]] = field(default_factory=list)

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

    def succeed_as_stored(self, stored: list[tuple[int, datetime]]) -> None:
        """Record that every event of the unit was already stored (at these positions and
        commit times): a retry of a save that did commit, which writes nothing."""
        self.stored = stored
        self.first_position = min(position for position, _ in stored)
        self.recorded_at = stored[0][1]
        self.done = True

    def unsettle(self) -> None:
        """Forget a success recorded inside a transaction that did not commit."""
        self.done = False
        self.stored = None

    def fail(self, error: BaseException) -> None:
        """Record that nothing of this unit was written, and why."""
        self.error = error
        self.done = True

    def stamp(self) -> None:
        """Give each event its global position and commit time, and mark exactly these events
        committed on their aggregates (events applied since stay uncommitted)."""
        assert self.recorded_at is not None
        if self.stored is None:
            # One commit time for all: no (position, time) pair per event, which would cost an
            # allocation per event (and the garbage collector's passes they set off).
            recorded_at = self.recorded_at
            for position, event in enumerate(self.events, self.first_position):
                event.global_position = position
                event.recorded_at = recorded_at
        else:
            for event, (position, recorded_at) in zip(self.events, self.stored, strict=True):
                event.global_position = position
                event.recorded_at = recorded_at
        saved = {id(event) for event in self.events}
        for aggregate in self.aggregates:
            aggregate._mark_committed(saved)


@contextlib.contextmanager
def _unsettled_unless_committed(units: Sequence[SaveUnit]) -> Iterator[None]:
    # Units settled inside a transaction that then fails to commit were not written after all:
    # forget the outcome so the caller settles them with the failure.
    try:
        yield
    except BaseException:
        for unit in units:
            if unit.committed:
                unit.unsettle()
        raise


def _keyed(units: Sequence[SaveUnit]) -> bool:
    return any(unit.subjects for unit in units)


def _forgotten(unit: SaveUnit) -> SubjectForgottenError:
    return forgotten_error(", ".join(sorted({subject for subject, _ in unit.subjects})))


def append_arguments(
    units: list[SaveUnit], channel: str, keyed: bool = False
) -> tuple[Any, ...]:
    """Parameters of :attr:`StoreSql.append` for ``units`` (unit numbers are list indexes);
    with ``keyed``, those of :attr:`StoreSql.append_keyed`."""
    aggregates = aggregate_arguments(units)
    event_units: list[int] = []
    for index, unit in enumerate(units):
        event_units += [index] * len(unit.batch)
    columns: list[Any] | tuple[list[Any], ...]
    if len(units) == 1:
        columns = units[0].batch.columns()  # only read while the statement is sent
    elif len(event_units) > 4 * len(units):  # large units: twelve list extensions each
        columns = [[] for _ in range(12)]  # the twelve per-event columns after the unit
        for unit in units:
            for target, values in zip(columns, unit.batch.columns(), strict=True):
                target += values
    else:  # many small units: one flattening per column
        columns = [
            list(chain.from_iterable(column))
            for column in zip(*(unit.batch.columns() for unit in units), strict=True)
        ]
    # A column of NULLs only (causation, correlation and user ids, mostly) goes as one NULL:
    # the statement's unnest pads it, and the driver skips checking each element.
    columns = [None if column.count(None) == len(column) else column for column in columns]
    arguments = (*aggregates, event_units, *columns, channel)
    if not keyed:
        return arguments
    key_units: list[int] = []
    subjects: list[str] = []
    generations: list[int] = []
    for index, unit in enumerate(units):
        for subject, generation in unit.subjects:
            key_units.append(index)
            subjects.append(subject)
            generations.append(generation)
    return (*arguments, key_units, subjects, generations)


def aggregate_arguments(units: list[SaveUnit]) -> tuple[list[Any], ...]:
    """Parameters ``$1..$5`` of :attr:`StoreSql.append`: per aggregate, its unit (an index in
    ``units``), id, expected version, type and new version."""
    aggregate_units: list[int] = []
    aggregate_ids: list[str] = []
    expected: list[int] = []
    aggregate_types: list[str] = []
    new_versions: list[int] = []
    for index, unit in enumerate(units):
        batch = unit.batch
        size = len(batch)
        if len(unit.aggregate_ids) == 1:  # the common save: one aggregate, all its events
            aggregate_units.append(index)
            aggregate_ids.append(unit.aggregate_ids[0])
            expected.append(unit.expected_versions[0])
            aggregate_types.append(batch.aggregate_types[-1] if size else "")
            new_versions.append(unit.expected_versions[0] + size)
        else:
            counts = Counter(batch.aggregate_ids)
            types = dict(zip(batch.aggregate_ids, batch.aggregate_types, strict=True))
            pairs = zip(unit.aggregate_ids, unit.expected_versions, strict=True)
            for aggregate_id, version in pairs:
                aggregate_units.append(index)
                aggregate_ids.append(aggregate_id)
                expected.append(version)
                aggregate_types.append(types.get(aggregate_id, ""))
                new_versions.append(version + counts[aggregate_id])
    return aggregate_units, aggregate_ids, expected, aggregate_types, new_versions


@dataclass(frozen=True)
class AppendResult:
    """What one append statement did: the head after it (None when nothing was written), the
    units it wrote, and the busy units it left alone (an aggregate held by an open transaction;
    to be appended again with the statement that waits)."""

    head: int | None
    committed: list[SaveUnit]
    busy: list[SaveUnit] = field(default_factory=list)
    #: Partitioned events table only: the head from which partitions are to be added.
    grow_at: int | None = None


async def append(
    connection: Connection,
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

    On a partitioned events table, partitions are created ahead of need after the commit, and
    an append with no partition for its positions (a group larger than the room kept ahead)
    creates them and runs again (the statement wrote nothing).
    """
    for _ in range(PARTITION_ATTEMPTS - 1):
        try:
            result = await _append(connection, sql, dsn, units, wait=wait)
        except _NoPartition:
            await _make_room(connection, sql, dsn, units)
            continue
        if not connection.is_in_transaction():
            await _grow(connection, sql, result)
        return result
    return await _append(connection, sql, dsn, units, wait=wait, last_attempt=True)


class _NoPartition(Exception):
    """An append found no partition for its positions; nothing was written."""


async def _make_room(
    connection: Connection, sql: StoreSql, dsn: str, units: Sequence[SaveUnit]
) -> None:
    with database_errors(dsn, writing=True):
        await connection.fetchval(sql.make_room, sum(len(unit.batch) for unit in units))


async def _grow(connection: Connection, sql: StoreSql, result: AppendResult) -> None:
    # After the commit: the save is done whatever happens here, and a later append (or the
    # fallback above) creates the partitions if this fails.
    if result.grow_at is None or result.head is None or result.head < result.grow_at:
        return
    try:
        await connection.fetchval(sql.extend_partitions, result.head)
    except Exception as exc:
        logger.warning("could not create the next event partitions (%s); retried later", exc)


async def _append(
    connection: Connection,
    sql: StoreSql,
    dsn: str,
    units: list[SaveUnit],
    *,
    wait: bool = False,
    last_attempt: bool = False,
) -> AppendResult:
    if wait:
        # Wait for the aggregates' stream locks in a transaction of this append's own, then
        # append in it: the statement sees what the previous holder committed.
        try:
            with database_errors(dsn, writing=True), _unsettled_unless_committed(units):
                async with connection.transaction():
                    await lock_streams(connection, sql, units)
                    return await _append(connection, sql, dsn, units)
        except EventualiError as exc:
            if last_attempt or not missing_partition(exc.__cause__):
                raise
            raise _NoPartition from exc
    keyed = _keyed(units)
    with database_errors(dsn, writing=True):
        try:
            row = await connection.fetchrow(
                sql.append_keyed if keyed else sql.append,
                *append_arguments(units, sql.channel, keyed),
            )
        except ServerError as exc:
            if missing_partition(exc) and not last_attempt and not connection.is_in_transaction():
                raise _NoPartition from exc
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
                    result = await append(connection, sql, dsn, [unit])
                    if result.head is not None:
                        heads.append(result.head)
                    committed += result.committed
                    busy += result.busy
                return AppendResult(max(heads) if heads else None, committed, busy)
            await _settle_refused(connection, sql, dsn, units[0], exc)
            return AppendResult(None, [units[0]] if units[0].committed else [])
    assert row is not None
    rejected = set(row["rejected"])
    forgotten = set(row["forgotten"]) if keyed else set()
    rejected -= forgotten
    left_alone = rejected | forgotten | set(row["busy"])
    accepted = [unit for index, unit in enumerate(units) if index not in left_alone]
    for index in forgotten:
        units[index].fail(_forgotten(units[index]))
    head = row["head"]
    position = (head or 0) - sum(len(unit.batch) for unit in accepted) + 1
    for unit in accepted:
        unit.succeed(position, row["recorded_at"])
        position += len(unit.events)
    for index in sorted(rejected):
        await _settle_rejected(connection, sql, dsn, units[index])
    committed = accepted + [units[index] for index in sorted(rejected) if units[index].committed]
    return AppendResult(
        head, committed, [units[index] for index in sorted(row["busy"])], row["grow_at"]
    )


_DUPLICATE_IDS = ("events_event_id_key", "event_ids_pkey")
_REJECTIONS = (*_DUPLICATE_IDS, "events_aggregate_version_key", "streams_pkey")


async def _settle_refused(
    connection: Connection,
    sql: StoreSql,
    dsn: str,
    unit: SaveUnit,
    exc: BaseException,
) -> None:
    constraint = unique_violation(exc)
    # streams_pkey: the aggregate was created by a transaction that committed after this
    # statement's snapshot; event_ids_pkey: an event id already stored (partitioned table).
    if constraint in _REJECTIONS:
        duplicate = server_detail(exc) if constraint in _DUPLICATE_IDS else None
        await _settle_rejected(connection, sql, dsn, unit, duplicate_id=duplicate or None)
        return
    unit.fail(await _refusal(connection, sql, dsn, unit, exc))


async def _refusal(
    connection: Connection,
    sql: StoreSql,
    dsn: str,
    unit: SaveUnit,
    exc: BaseException,
) -> EventualiError:
    constraint = unique_violation(exc)
    if constraint is not None:
        if constraint == "events_pkey":
            return EventualiError(
                f"global position already taken ({server_detail(exc)}): rows were written to "
                f"{sql.schema}.events without advancing {sql.schema}.global_sequence. Write "
                "events only through EventStore, and set the sequence row to the highest "
                "global_position before saving again"
            )
        return await _concurrency_error(connection, sql, dsn, unit)
    translated = translate(exc, dsn, writing=True)
    assert translated is not None  # every PostgresError has a translation
    return translated


async def _settle_rejected(
    connection: Connection,
    sql: StoreSql,
    dsn: str,
    unit: SaveUnit,
    *,
    duplicate_id: str | None = None,
) -> None:
    """Settle a unit the statement rejected: a retry of a save that did commit (every event id
    stored, at the same aggregate and version) succeeds with the stored positions; a partial
    match fails with :class:`RetryMismatchError`; an event id reused by a new event
    (``duplicate_id``: the server's detail) is an InvalidInputError; anything else is a
    ConcurrencyError."""
    with database_errors(dsn):
        rows = await connection.fetch(
            sql.stored_events, [event.event_id for event in unit.events]
        )
    if not rows:
        unit.fail(await _concurrency_error(connection, sql, dsn, unit))
        return
    stored = {row["event_id"]: row for row in rows}
    same = [
        event
        for event in unit.events
        if event.event_id in stored
        and stored[event.event_id]["aggregate_id"] == event.aggregate_id
        and stored[event.event_id]["aggregate_version"] == event.aggregate_version
    ]
    if not same and duplicate_id is not None:
        unit.fail(
            InvalidInputError(
                f"an event id of this save is already stored ({duplicate_id}); every event "
                "needs a new event_id"
            )
        )
        return
    if len(same) == len(unit.events):
        unit.succeed_as_stored(
            [
                (stored[e.event_id]["global_position"], stored[e.event_id]["recorded_at"])
                for e in unit.events
            ]
        )
        return
    unit.fail(
        RetryMismatchError(
            f"this save looks like a retry, but only {len(same)} of its {len(unit.events)} "
            f"events are stored as given ({len(stored)} of its event ids are stored, "
            f"{len(stored) - len(same)} of them under another aggregate or version). Nothing was "
            "written; reload the aggregate to see what its history holds"
        )
    )


async def _concurrency_error(
    connection: Connection, sql: StoreSql, dsn: str, unit: SaveUnit
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
    connection: Connection,
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
        if not unit.done:  # neither rejected nor a retry of a stored save
            await run_inline(inline, unit.events, connection)
    return True


async def lock_streams(
    connection: Connection, sql: StoreSql, units: Sequence[SaveUnit]
) -> None:
    """Wait for the stream locks of the units' aggregates (in one order everywhere)."""
    ids = sorted({aggregate_id for unit in units for aggregate_id in unit.aggregate_ids})
    await connection.fetchval(sql.lock_streams, ids)


async def _stage_statement(
    connection: Connection, sql: StoreSql, dsn: str, unit: SaveUnit, wait: bool
) -> bool:
    with database_errors(dsn, writing=True):
        if wait:
            await lock_streams(connection, sql, [unit])
        keyed = _keyed([unit])
        row = await connection.fetchrow(
            sql.stage_keyed if keyed else sql.stage,
            *append_arguments([unit], sql.channel, keyed),
        )
    assert row is not None
    if row["busy"]:
        return False
    if keyed and row["forgotten"]:
        unit.fail(_forgotten(unit))
        return True
    if row["rejected"]:
        await _settle_rejected(connection, sql, dsn, unit)
    return True


async def append_with_inline(
    connection: Connection,
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
    with database_errors(dsn, writing=True), _unsettled_unless_committed(units):
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
