"""Appending save units, with concurrent saves coalesced into one transaction.

A *save unit* is what one ``save``/``save_all`` call asks for: its aggregates, the version each
is expected to be at, and their encoded events. Units that arrive while another append is in
flight queue up; the next append takes the queue's head (bounded by ``max_events``) as one
statement: one sequence advance, one NOTIFY, one flush to disk. Each unit keeps its own outcome:
the statement rejects a unit whose expected version is stale without touching the others, and
no caller returns before its own events are committed. A lone writer never waits.

No background task: the caller that finds no append in flight leads one; the append itself
runs shielded, so cancelling the leader does not decide the fate of other callers' events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..codec import EncodedBatch
from ..models import Aggregate, Event

logger = logging.getLogger("eventuali_pg.store")


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
    signal: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def aggregate_ids(self) -> list[str]:
        """Ids of the unit's aggregates."""
        return [aggregate.id for aggregate in self.aggregates]

    def succeed(self, first_position: int, recorded_at: datetime) -> None:
        """Record that the unit's events were committed from ``first_position`` on, and stamp
        each event with its global position and the commit time."""
        self.first_position = first_position
        self.recorded_at = recorded_at
        for position, event in enumerate(self.events, start=first_position):
            event.global_position = position
            event.recorded_at = recorded_at
        self.done = True
        self.signal.set()

    def fail(self, error: BaseException) -> None:
        """Record that nothing of this unit was written, and why."""
        self.error = error
        self.done = True
        self.signal.set()


def append_arguments(units: list[SaveUnit], channel: str) -> tuple[Any, ...]:
    """Parameters of :attr:`StoreSql.append` for ``units`` (unit numbers are list indexes)."""
    aggregate_units: list[int] = []
    aggregate_ids: list[str] = []
    expected: list[int] = []
    event_units: list[int] = []
    columns: list[list[Any]] = [[] for _ in range(12)]
    for index, unit in enumerate(units):
        for aggregate, version in zip(unit.aggregates, unit.expected_versions, strict=True):
            aggregate_units.append(index)
            aggregate_ids.append(aggregate.id)
            expected.append(version)
        event_units += [index] * len(unit.batch)
        for target, values in zip(columns, unit.batch.columns(), strict=True):
            target += values
    return (aggregate_units, aggregate_ids, expected, event_units, *columns, channel)


RunGroup = Callable[[list[SaveUnit]], Awaitable[None]]


class AppendCoalescer:
    """Groups concurrent save units into as few append statements as possible."""

    def __init__(self, run_group: RunGroup, *, max_events: int, max_wait: float) -> None:
        self._run_group = run_group
        self._max_events = max_events
        self._max_wait = max_wait
        self._queue: deque[SaveUnit] = deque()
        self._leading = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self.groups = 0
        self.units = 0

    async def submit(self, unit: SaveUnit) -> None:
        """Append ``unit`` (alone or with others); raise its own error if it was rejected."""
        self._queue.append(unit)
        try:
            while not unit.done:
                if self._leading:
                    unit.signal.clear()
                    await unit.signal.wait()
                    continue
                await self._lead()
        except BaseException:
            if not unit.done and unit in self._queue:
                self._queue.remove(unit)
            raise
        if unit.error is not None:
            raise unit.error

    async def _lead(self) -> None:
        self._leading = True
        try:
            if self._max_wait > 0 and self._queued_events() < self._max_events:
                await asyncio.sleep(self._max_wait)
            group = self._take_group()
            if not group:
                return
            task = asyncio.create_task(self._run(group), name="eventuali_pg append")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            await asyncio.shield(task)
        finally:
            self._leading = False
            if self._queue:
                self._queue[0].signal.set()

    async def _run(self, group: list[SaveUnit]) -> None:
        self.groups += 1
        self.units += len(group)
        try:
            await self._run_group(group)
        except BaseException as exc:
            for unit in group:
                if not unit.done:
                    unit.fail(exc)
            if not isinstance(exc, Exception):
                raise
        for unit in group:
            if not unit.done:
                unit.fail(RuntimeError("append finished without an outcome for this save"))

    def _queued_events(self) -> int:
        return sum(len(unit.batch) for unit in self._queue)

    def _take_group(self) -> list[SaveUnit]:
        group: list[SaveUnit] = []
        events = 0
        touched: set[str] = set()
        deferred: list[SaveUnit] = []
        while self._queue:
            unit = self._queue[0]
            size = len(unit.batch)
            if group and events + size > self._max_events:
                break
            self._queue.popleft()
            ids = unit.aggregate_ids
            if touched.intersection(ids):
                # Two saves of one aggregate cannot share a statement: the second must see the
                # first committed to be judged against it.
                deferred.append(unit)
                continue
            touched.update(ids)
            group.append(unit)
            events += size
        self._queue.extendleft(reversed(deferred))
        return group

    async def wait_idle(self) -> None:
        """Wait for appends already in flight (used by close)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
