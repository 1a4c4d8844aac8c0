"""Snapshots: an aggregate's state stored at a version, so ``load`` replays only later events.

An aggregate class opts in with ``class User(Aggregate, snapshot_every=50)`` (and may declare
``snapshot_version=2`` when the shape of its state changes). After a save that crosses a
multiple of ``snapshot_every`` commits, the writer captures the state (one ``model_dump_json``
per such aggregate, the only cost inside the save's path) and hands it to a task of its own
that writes it; a failed or dropped snapshot only means a longer replay next time. ``load``
starts from the snapshot when it is of the class's snapshot version, not ahead of the stored
events, and still validates against the class; otherwise it is ignored (with a warning when
it no longer validates) and the aggregate is rebuilt from all its events.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from pydantic import ValidationError

from .._db import Pool, database_errors
from .._tasks import cancel_and_wait
from ..codec import require_decoded
from ..models import Aggregate, aggregate_type_of
from .appender import SaveUnit
from .reader import EventReader
from .sql import StoreSql

logger = logging.getLogger("eventuali_pg.store")

A = TypeVar("A", bound=Aggregate)

#: Snapshots waiting to be written; more are dropped (the next crossing takes one again).
MAX_PENDING_SNAPSHOTS = 1000

_Snapshot = tuple[str, str, int, int, str]


class SnapshotWriter:
    """Captures snapshots after commits and writes them in a task of its own."""

    def __init__(self, pool: Pool, sql: StoreSql, dsn: str) -> None:
        self._pool = pool
        self._sql = sql
        self._dsn = dsn
        self._queue: asyncio.Queue[_Snapshot] = asyncio.Queue(MAX_PENDING_SNAPSHOTS)
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def consider(self, units: list[SaveUnit]) -> None:
        """Capture the state of every committed aggregate whose save crossed a multiple of its
        class's ``snapshot_every``."""
        for unit in units:
            counts: dict[str, int] = {}
            for event in unit.events:
                counts[event.aggregate_id] = counts.get(event.aggregate_id, 0) + 1
            for aggregate, expected in zip(unit.aggregates, unit.expected_versions, strict=True):
                every = type(aggregate).snapshot_every
                if every is None:
                    continue
                version = expected + counts.get(aggregate.id, 0)
                if expected // every == version // every or aggregate.version != version:
                    continue  # no multiple crossed, or the aggregate moved on since
                self._put(
                    (
                        aggregate.id,
                        aggregate.get_aggregate_type(),
                        type(aggregate).snapshot_version,
                        version,
                        aggregate.model_dump_json(),
                    )
                )

    def _put(self, snapshot: _Snapshot) -> None:
        try:
            self._queue.put_nowait(snapshot)
        except asyncio.QueueFull:
            self.dropped += 1
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="eventuali_pg snapshot writer")

    async def _run(self) -> None:
        while True:
            snapshots = [await self._queue.get()]
            while not self._queue.empty():
                snapshots.append(self._queue.get_nowait())
            try:
                with database_errors(self._dsn):
                    await self._pool.executemany(self._sql.snapshot_save, snapshots)
                self.written += len(snapshots)
            except Exception as exc:  # a snapshot is an optimization: never fail anything
                self.failed += len(snapshots)
                logger.warning("writing %d snapshot(s) failed (%s)", len(snapshots), exc)
            for _ in snapshots:
                self._queue.task_done()

    async def close(self) -> None:
        """Write what is queued (at most a few seconds), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(5.0):
                await self._queue.join()
        except TimeoutError:
            logger.warning("%d snapshot(s) not written at close", self._queue.qsize())
        await cancel_and_wait(task)


async def load_from_snapshot(
    reader: EventReader, pool: Pool, sql: StoreSql, dsn: str, cls: type[A], aggregate_id: str
) -> A | None:
    """The aggregate rebuilt from its usable snapshot and the events after it; None when it
    has no usable snapshot (the caller replays everything)."""
    with database_errors(dsn):
        row = await pool.fetchrow(sql.snapshot_load, aggregate_id)
    if row is None:
        return None
    if (
        row["snapshot_version"] != cls.snapshot_version
        or row["aggregate_type"] != aggregate_type_of(cls)
        or row["version"] > row["stream_version"]
    ):
        return None
    try:
        aggregate = cls.model_validate_json(row["state"])
    except ValidationError as exc:
        logger.warning(
            "ignoring the snapshot of %s %r at version %d: it no longer fits the class (%s)",
            cls.__name__,
            aggregate_id,
            row["version"],
            exc.errors(include_url=False)[0]["msg"],
        )
        return None
    if aggregate.id != aggregate_id or aggregate.version != row["version"]:
        return None
    for event in await reader.aggregate_events(aggregate_id, row["version"]):
        aggregate.replay(require_decoded(event))
    return aggregate
