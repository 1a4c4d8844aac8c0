"""The append writer: one task per store that owns the queue of saves and appends them in groups.

Each ``save``/``save_all`` call queues one :class:`SaveUnit` and waits for its outcome. The
writer task takes the queue's head as one group (at most ``max_events`` events; two saves of one
aggregate never share a group, and a save never overtakes an earlier save of any of its
aggregates) and appends it with one statement: one sequence advance, one NOTIFY, one flush to
disk, while each unit keeps its own outcome.

A unit whose aggregate is held by an open transaction (one that saved it with
``store.transaction()`` or a caller's connection) comes back *busy*: it is handed to a task of
its own that waits for that transaction on a separate connection, while the writer goes on
with everything else; later saves of its aggregates wait behind it, in order. So an open
transaction holds up only writers of its own aggregates.

Because one task owns the queue, a cancelled caller only stops waiting: a unit not yet taken
leaves the queue (nothing written); a unit in flight is settled by the writer anyway (its
events are stamped and its aggregates marked committed if it commits). ``close()`` appends
every unit already queued (waiting for busy ones), then ends the tasks; saves submitted after
it are refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from ..errors import StoreClosedError
from .appender import AppendResult, SaveUnit

logger = logging.getLogger("eventuali_pg.store")

#: Appends one group and returns what was committed; failures settle the units (or raise).
RunGroup = Callable[[list[SaveUnit]], Awaitable[AppendResult]]
#: Appends one busy unit, waiting for the transaction that holds its aggregates.
RunWaiting = Callable[[SaveUnit], Awaitable[AppendResult]]
#: Called after every group with the head it reached (None when nothing was written).
OnGroupDone = Callable[[AppendResult], None]


class _Queued:
    __slots__ = ("settled", "taken", "unit")

    def __init__(self, unit: SaveUnit) -> None:
        self.unit = unit
        self.taken = False
        self.settled = asyncio.Event()


class AppendWriter:
    """Owns the save queue and the one task that appends it. See the module docstring."""

    def __init__(
        self,
        run_group: RunGroup,
        on_group_done: OnGroupDone,
        *,
        max_events: int,
        max_wait: float,
        run_waiting: RunWaiting | None = None,
    ) -> None:
        self._run_group = run_group
        self._run_waiting = run_waiting
        self._held: dict[str, int] = {}  # aggregate ids of busy units, and how many
        self._waiting_tasks: set[asyncio.Task[None]] = set()
        self._on_group_done = on_group_done
        self._max_events = max_events
        self._max_wait = max_wait
        self._queue: deque[_Queued] = deque()
        self._queued_events = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.groups = 0
        self.units = 0

    async def submit(self, unit: SaveUnit) -> None:
        """Append ``unit`` (alone or with others); raise its own error if it failed."""
        if self._closing:
            raise StoreClosedError(
                "this EventStore is closed; nothing was written. Create a new one with "
                "EventStore.create()"
            )
        entry = _Queued(unit)
        self._queue.append(entry)
        self._queued_events += len(unit.batch)
        if self._queued_events >= self._max_events:
            self._full.set()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="eventuali_pg append writer")
        try:
            await entry.settled.wait()
        except asyncio.CancelledError:
            if not entry.taken:
                self._queue.remove(entry)
                self._queued_events -= len(unit.batch)
            raise
        if unit.error is not None:
            raise unit.error

    async def close(self) -> None:
        """Append every queued save, then end the writer task. Idempotent."""
        self._closing = True
        self._wake.set()
        self._full.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.shield(task)
            while self._waiting_tasks:
                await asyncio.shield(asyncio.wait(set(self._waiting_tasks)))
        except asyncio.CancelledError:
            # The closer was cancelled: stop the tasks rather than leave them running.
            tasks = {task, *self._waiting_tasks}
            for pending in tasks:
                pending.cancel()
            await asyncio.wait(tasks)
            raise

    @property
    def queued(self) -> int:
        """Saves waiting for the writer."""
        return len(self._queue)

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if self._max_wait > 0 and not self._closing:
                    await self._wait_for_company()
                group = self._take_group()
                if group:
                    await self._append(group)
                else:  # every queued save waits behind a busy one: wait for it to finish
                    self._wake.clear()
                    await self._wake.wait()
        finally:
            # Only reached with saves still queued when the task itself was cancelled.
            while self._queue:
                entry = self._queue.popleft()
                entry.unit.fail(
                    StoreClosedError("the store was closed before this save ran; nothing written")
                )
                entry.settled.set()

    async def _wait_for_company(self) -> None:
        if self._queued_events >= self._max_events:
            return
        self._full.clear()
        try:
            async with asyncio.timeout(self._max_wait):
                await self._full.wait()
        except TimeoutError:
            pass

    def _take_group(self) -> list[_Queued]:
        group: list[_Queued] = []
        events = 0
        touched: set[str] = set()
        blocked: set[str] = set()
        kept: list[_Queued] = []
        while self._queue:
            entry = self._queue[0]
            size = len(entry.unit.batch)
            if group and events + size > self._max_events:
                break
            self._queue.popleft()
            ids = entry.unit.aggregate_ids
            if (
                touched.intersection(ids)
                or blocked.intersection(ids)
                or any(i in self._held for i in ids)
            ):
                # Two saves of one aggregate cannot share a statement (the second must be judged
                # against the first), and a save may not overtake an earlier save of any of its
                # aggregates: it waits, and so does everything of its aggregates after it.
                blocked.update(ids)
                kept.append(entry)
                continue
            touched.update(ids)
            entry.taken = True
            group.append(entry)
            events += size
        self._queue.extendleft(reversed(kept))
        self._queued_events -= events
        return group

    async def _append(self, group: list[_Queued]) -> None:
        self.groups += 1
        self.units += len(group)
        units = [entry.unit for entry in group]
        result: AppendResult | None = None
        try:
            result = await self._run_group(units)
        except Exception as exc:
            for unit in units:
                if not unit.done:
                    unit.fail(exc)
        except BaseException as exc:
            for unit in units:
                if not unit.done:
                    unit.fail(StoreClosedError(f"the append was interrupted ({exc!r})"))
            raise
        finally:
            busy = set(map(id, result.busy)) if result is not None else set()
            for entry in group:
                if id(entry.unit) in busy and not entry.unit.done:
                    self._start_waiting(entry)
                    continue
                if entry.unit.committed:
                    entry.unit.stamp()
                entry.settled.set()
        self._notify(result or AppendResult(None, [u for u in units if u.committed]))

    def _notify(self, result: AppendResult) -> None:
        try:
            self._on_group_done(result)
        except Exception:  # a listener's failure must not stop the writer
            logger.exception("a commit listener failed")

    def _start_waiting(self, entry: _Queued) -> None:
        for aggregate_id in entry.unit.aggregate_ids:
            self._held[aggregate_id] = self._held.get(aggregate_id, 0) + 1
        task = asyncio.create_task(
            self._append_waiting(entry), name="eventuali_pg append waiting for a transaction"
        )
        self._waiting_tasks.add(task)
        task.add_done_callback(self._waiting_tasks.discard)

    async def _append_waiting(self, entry: _Queued) -> None:
        unit = entry.unit
        result: AppendResult | None = None
        try:
            assert self._run_waiting is not None, "a busy unit needs run_waiting"
            result = await self._run_waiting(unit)
        except Exception as exc:
            if not unit.done:
                unit.fail(exc)
        except BaseException as exc:
            if not unit.done:
                unit.fail(StoreClosedError(f"the append was interrupted ({exc!r})"))
            raise
        finally:
            if unit.committed:
                unit.stamp()
            entry.settled.set()
            for aggregate_id in unit.aggregate_ids:
                left = self._held[aggregate_id] - 1
                if left:
                    self._held[aggregate_id] = left
                else:
                    del self._held[aggregate_id]
            self._wake.set()
        self._notify(result or AppendResult(None, [unit] if unit.committed else []))
