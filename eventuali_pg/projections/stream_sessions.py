"""The sessions of a runner that follows the whole stream (no elastic group): supervision
with backoff, the single-active lease, and the loop that reads a subscription's receiver into
batches.

A session subscribes after the stored checkpoint on the runner's own :class:`EventStreamer`
(the receiver catches up from the table, then follows the live feed); a reader task moves
events into a small queue and the processing task takes them in batches. A lost lease, a moved
checkpoint or a database failure ends the session; :meth:`StreamSessions._supervise` starts the
next one after a backoff, from the stored checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .._tasks import cancel_and_wait, run_together
from ..personal import FORGET_AGGREGATE_TYPE, FORGET_EVENT_TYPE
from ..stream.backoff import Backoff
from ..stream.receiver import EventStreamReceiver
from ..stream.stream_event import StreamEvent
from ..stream.streamer import EventStreamer
from ..stream.subscription import NameFilter, Subscription
from ._db import close_connection, database_step, open_connection
from .leases import AdvisoryLease
from .processing import EventHandling
from .versions import register

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")

#: How often an idle filtered runner looks how far its receiver has examined the stream (in
#: memory; the receiver does not signal events its filters skip).
SKIP_POLL_INTERVAL = 0.1


class StreamSessions(EventHandling):
    """The whole-stream half of :class:`~eventuali_pg.ProjectionRunner` (its state is the
    runner's)."""

    _store: EventStore
    _base_subscription_id: str
    _version: int
    _stopping: bool
    _idle: asyncio.Event
    _active: bool
    _sessions: int
    _last_error: str | None
    _batch_size: int
    _lease: AdvisoryLease | None
    _lease_poll_interval: float
    _standby_checkpoint: int | None
    _aggregate_type_filter: NameFilter
    _event_type_filter: NameFilter
    _filtered: bool
    _reader_waiting: bool

    async def _supervise(self, streamer: EventStreamer) -> None:
        backoff = Backoff(initial=0.1, maximum=5.0)
        while not self._stopping and not self._store.closed:
            lease = self._lease
            try:
                if lease is not None:
                    await self._acquire(lease)
                self._active = True
                self._sessions += 1
                await self._session(streamer)
                if not self._stopping and not self._store.closed:
                    # The receiver ended under us (streamer detached): do not spin.
                    await asyncio.sleep(backoff.next_delay())
            except Exception as exc:
                if not self._session_ended(exc, "resuming from the checkpoint"):
                    return
                await asyncio.sleep(backoff.next_delay())
            finally:
                self._active = False
                if lease is not None:
                    await lease.release()

    async def _acquire(self, lease: AdvisoryLease) -> None:
        """Wait for the lease, following the stored checkpoint meanwhile (for :meth:`stats`)."""
        follower = asyncio.create_task(
            self._follow_stored_checkpoint(), name=f"eventuali_pg standby {self._checkpoint_id}"
        )
        try:
            await lease.acquire()
        finally:
            await cancel_and_wait(follower)
            self._standby_checkpoint = None

    async def _follow_stored_checkpoint(self) -> None:
        while True:
            try:
                stored = await self._checkpoints.get_many(self._checkpoint_ids)
                self._standby_checkpoint = min(stored.values())
            except Exception as exc:  # a standby's figure must never stop the runner
                logger.debug(
                    "projection %r: reading the checkpoint failed (%s)", self._checkpoint_id, exc
                )
            await asyncio.sleep(self._lease_poll_interval)

    async def _session(self, streamer: EventStreamer) -> None:
        async with database_step():
            self._positions = await self._checkpoints.get_many(self._checkpoint_ids)
            stored = min(self._positions.values())
            self._replay_until = await register(
                self._store, self._base_subscription_id, self._version, stored
            )
            if self._exactly_once:
                self._connection = await open_connection(self._store)
        try:
            await self._follow(streamer, stored)
        finally:
            connection, self._connection = self._connection, None
            await close_connection(connection)

    async def _follow(self, streamer: EventStreamer, stored: int) -> None:
        # The stored checkpoint is the truth, also for at-least-once: someone may have reset or
        # deleted it since this runner last processed anything.
        start = self._committed = self._processed = stored
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()
        # Filters let the SubjectForgotten events through too: on_forget is due whatever the
        # projection follows.
        subscription = Subscription(
            id=f"{self._checkpoint_id}@{uuid.uuid4().hex[:8]}",
            aggregate_type_filter=_with(self._aggregate_type_filter, FORGET_AGGREGATE_TYPE),
            event_type_filter=_with(self._event_type_filter, FORGET_EVENT_TYPE),
            from_position=start,
        )
        subscription._telemetry_name = self._subscription_id
        receiver = await streamer.subscribe(subscription)
        logger.info("projection %r resumes after position %d", self._checkpoint_id, start)
        # Lists of events, each at most a batch: the reader takes what the receiver holds in
        # one call, and one list waits here while the processor handles the batch before it.
        queue: asyncio.Queue[list[StreamEvent]] = asyncio.Queue(maxsize=1)
        try:
            parts: list[tuple[str, Coroutine[Any, Any, None]]] = [
                ("reader", self._read(receiver, queue)),
                ("processor", self._process(queue, receiver, streamer)),
            ]
            if self._lease is not None:
                parts.append(("lease", self._lease.watch()))
            await run_together(f"projection {self._checkpoint_id}", parts)
        finally:
            await receiver.close()

    async def _read(
        self, receiver: EventStreamReceiver, queue: asyncio.Queue[list[StreamEvent]]
    ) -> None:
        limit = self._batch_size
        while True:
            self._reader_waiting = True
            try:
                items = await receiver.next_batch(limit)
            finally:
                self._reader_waiting = False
            if not items:
                return  # the receiver has ended
            await queue.put(items)

    async def _process(
        self,
        queue: asyncio.Queue[list[StreamEvent]],
        receiver: EventStreamReceiver,
        streamer: EventStreamer,
    ) -> None:
        limit = self._batch_size
        # Events taken from the queue beyond a full batch: the start of the next one.
        carried: list[StreamEvent] = []
        while True:
            if self._stopping:
                return
            batch, carried = carried, []
            if not batch:
                try:
                    async with asyncio.timeout(self._idle_timeout()):
                        batch = await queue.get()
                except TimeoutError:
                    pass
            if self._stopping:
                return
            self._idle.clear()
            try:
                if not batch:
                    await self._skip_filtered(queue, receiver, streamer, carried)
                    if self._checkpoint_due():
                        await self._flush()
                    continue
                while len(batch) < limit and not queue.empty():
                    batch.extend(queue.get_nowait())
                if len(batch) > limit:
                    batch, carried = batch[:limit], batch[limit:]
                await self._handle(batch)
                await self._skip_filtered(queue, receiver, streamer, carried)
            finally:
                self._idle.set()

    def _idle_timeout(self) -> float | None:
        """Seconds to wait for the next event before looking at the checkpoint again."""
        timeouts: list[float] = []
        if self._processed > self._committed:
            elapsed = time.monotonic() - self._checkpointed_at
            timeouts.append(max(self._checkpoint_interval - elapsed, 0.0))
        if self._filtered:
            timeouts.append(SKIP_POLL_INTERVAL)
        return min(timeouts, default=None)

    def _checkpoint_due(self) -> bool:
        return (
            self._processed > self._committed
            and time.monotonic() - self._checkpointed_at >= self._checkpoint_interval
        )

    async def _skip_filtered(
        self,
        queue: asyncio.Queue[list[StreamEvent]],
        receiver: EventStreamReceiver,
        streamer: EventStreamer,
        carried: list[StreamEvent],
    ) -> None:
        """Count the events the filters skipped as processed, up to where the receiver has
        examined the stream; the checkpoint follows at the next write (a batch's transaction,
        or after ``checkpoint_interval``), never one write per skipped event."""
        if not self._filtered:
            return
        head = await streamer.get_global_position()
        if not self._reader_waiting or not queue.empty() or carried:
            return  # an event the receiver delivered is not handled yet
        stats = receiver.stats()
        # Live with nothing buffered: every event up to the head was offered to the receiver,
        # and every matching one was delivered and handled. Otherwise the receiver's lag says
        # how far it has examined the stream, filtered-out events included.
        live_and_empty = stats.live and stats.buffer_depth == 0
        await self._advanced(head if live_and_empty else head - stats.lag)


def _with(names: NameFilter, name: str) -> NameFilter:
    """The filter ``names`` letting ``name`` through too (None stays: everything passes)."""
    if names is None:
        return None
    listed = [names] if isinstance(names, str) else list(names)
    return [*listed, name] if name not in listed else listed
