"""How a runner handles its events: batches to the handler, one at a time after a failure,
retries with backoff, parking, and moving its checkpoints (fenced on where it left them).

:class:`EventHandling` is the processing half of :class:`~eventuali_pg.ProjectionRunner`; the
runner itself (``runner.py``) coordinates: lifecycle, sessions, the lease, reading the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import telemetry
from ..errors import CheckpointError
from ..models import Event
from ..personal import forgotten_subject, is_forget_event
from ..stream.backoff import Backoff
from ..stream.stream_event import StreamEvent
from ._db import DatabaseFailure, HandlerFailure, cancelling, database_step
from .checkpoints import CheckpointStore
from .dead_letters import DeadLetterQueue
from .elastic import ElasticGroup
from .groups import ConsumerGroup
from .leases import LeaseLost
from .projection import AnyProjection, TransactionalProjection

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")


class EventHandling:
    """The processing state and steps of a runner (see the module docstring)."""

    _store: EventStore
    _projection: AnyProjection
    _subscription_id: str
    _checkpoint_id: str
    _checkpoint_ids: list[str]
    _positions: dict[str, int]
    _checkpoints: CheckpointStore
    _dead_letters: DeadLetterQueue
    _group: ConsumerGroup | ElasticGroup | None
    _exactly_once: bool
    _connection: Any
    _progress: asyncio.Condition
    _processed: int
    _committed: int
    _since_checkpoint: int
    _checkpointed_at: float
    _checkpoint_every: int
    _checkpoint_interval: float
    _max_attempts: int
    _retry_delay: float
    _max_retry_delay: float
    _handled: int
    _batches: int
    _retries: int
    _parked: int
    _replay_until: int
    _last_error: str | None

    def _session_ended(self, exc: Exception, then: str) -> bool:
        """Record and log why a session ended (call it in the ``except`` block); False when
        the store is closed, so the supervisor stops instead of starting another session."""
        if isinstance(exc, (CheckpointError, LeaseLost)):
            self._last_error = str(exc)
            logger.warning("projection %r: %s; %s", self._checkpoint_id, exc, then)
            return True
        if isinstance(exc, DatabaseFailure):
            self._last_error = str(exc)
            if self._store.closed:
                return False
            logger.warning(
                "projection %r: database failure (%s); %s", self._checkpoint_id, exc, then
            )
            return True
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._store.closed:
            return False
        logger.exception("projection %r failed; %s", self._checkpoint_id, then)
        return True

    async def _fence(self, connection: Any) -> None:
        """In the transaction of a batch (exactly-once): refuse to commit when this runner no
        longer owns what it handles. Ownership that is not leased per partition (a single
        subscription, a fixed group) is fenced by the checkpoints alone."""

    def _partition_checkpoint(self, aggregate_id: str) -> str | None:
        """The checkpoint id of the partition of ``aggregate_id`` when this runner handles it
        now; None when it is another member's share."""
        group = self._group
        if group is None:
            return self._subscription_id
        checkpoint_id = group.partition_checkpoint_id(
            self._subscription_id, group.partition(aggregate_id)
        )
        return checkpoint_id if checkpoint_id in self._positions else None

    def _mine(self, batch: Sequence[StreamEvent]) -> list[StreamEvent]:
        if self._group is None:
            return list(batch)
        mine = []
        for item in batch:
            if is_forget_event(item.event):
                mine.append(item)  # to every member: each erases after its own events
                continue
            partition = self._partition_checkpoint(item.event.aggregate_id)
            if partition is not None and item.global_position > self._positions[partition]:
                mine.append(item)  # else: handled already, by this partition's former member
        return mine

    async def _handle(self, batch: list[StreamEvent]) -> None:
        until = self._replay_until
        if batch[0].global_position <= until < batch[-1].global_position:
            # A batch never mixes replayed and new events: the handler is told which it gets.
            cut = next(i for i, item in enumerate(batch) if item.global_position > until)
            await self._handle(batch[:cut])
            await self._handle(batch[cut:])
            return
        if len(batch) > 1:
            at = next((i for i, item in enumerate(batch) if is_forget_event(item.event)), None)
            if at is not None:
                # A forget is its own call (on_forget), between the events around it.
                for part in (batch[:at], batch[at : at + 1], batch[at + 1 :]):
                    if part:
                        await self._handle(part)
                return
        self._batches += 1
        last = batch[-1].global_position
        replaying = last <= until
        self._projection.replaying = replaying
        with telemetry.process_span(
            self._store.schema, self._subscription_id, batch, replaying=replaying
        ):
            await self._handle_batch(batch, last, replaying)

    async def _handle_batch(self, batch: list[StreamEvent], last: int, replaying: bool) -> None:
        mine = [] if replaying and self._projection.skip_replay else self._mine(batch)
        if any(item.event.decode_error is not None for item in mine):
            # A stored event this process cannot read is parked, never handed to the handler:
            # the rest of the batch goes one at a time around it.
            await self._one_by_one(batch, None)
        elif mine:
            first_error: BaseException | None = None
            try:
                await self._apply([item.event for item in mine], last)
            except HandlerFailure as failure:
                first_error = failure.cause
                telemetry.handler_failed(failure.cause)
            if first_error is not None:
                await self._one_by_one(batch, first_error if len(mine) == 1 else None)
        await self._advanced(last)
        if self._committed >= self._processed:
            self._since_checkpoint = 0
            self._checkpointed_at = time.monotonic()
            return
        self._since_checkpoint += len(batch)
        if (
            self._since_checkpoint >= self._checkpoint_every
            or time.monotonic() - self._checkpointed_at >= self._checkpoint_interval
        ):
            await self._flush()

    async def _apply(self, events: list[Event], last: int, *, single: bool = False) -> None:
        """Batches go to ``handle_batch``; events retried one at a time to ``handle_event``.

        Raises :class:`HandlerFailure` when the handler raised, :class:`DatabaseFailure` when
        the runner's own database work failed (or the connection died under the handler).
        """
        if self._exactly_once:
            conn = self._connection
            async with database_step(), conn.transaction():
                await self._fence(conn)
                await self._advance_checkpoints(last, connection=conn)
                await self._call_handler(events, single, conn)
            self._moved(last)
        else:
            await self._call_handler(events, single, None)
        self._handled += len(events)

    async def _call_handler(self, events: list[Event], single: bool, conn: Any) -> None:
        """The handler's call, where whatever it raises becomes a :class:`HandlerFailure`."""
        projection = self._projection
        try:
            if is_forget_event(events[0]):
                subject = forgotten_subject(events[0])
                if isinstance(projection, TransactionalProjection):
                    await projection.on_forget(subject, conn)
                else:
                    await projection.on_forget(subject)
            elif isinstance(projection, TransactionalProjection):
                if single:
                    await projection.handle_event(events[0], conn)
                else:
                    await projection.handle_batch(events, conn)
            elif single:
                await projection.handle_event(events[0])
            else:
                await projection.handle_batch(events)
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and cancelling():
                raise  # the runner is stopping; the handler merely was interrupted
            if conn is not None and conn.is_closed():
                raise DatabaseFailure(exc) from exc
            raise HandlerFailure(exc) from exc

    async def _one_by_one(
        self, batch: list[StreamEvent], first_error: BaseException | None
    ) -> None:
        for item in batch:
            if self._partition_checkpoint(
                item.event.aggregate_id
            ) is None and not is_forget_event(item.event):
                continue
            await self._attempt(item, first_error)
            await self._advanced(item.global_position)

    async def _attempt(self, item: StreamEvent, first_error: BaseException | None) -> None:
        if item.event.decode_error is not None:  # permanent: retrying cannot help
            await self._park(item, item.event.decode_error, 0)
            return
        backoff = Backoff(initial=self._retry_delay, maximum=self._max_retry_delay)
        attempts = 0
        error = first_error
        if error is not None:
            attempts = 1
        while True:
            if error is not None:
                if attempts >= self._max_attempts:
                    await self._park(item, error, attempts)
                    return
                self._retries += 1
                delay = backoff.next_delay()
                logger.warning(
                    "projection %r: event %d (%s) failed (attempt %d of %d: %s); retrying in %.2fs",
                    self._checkpoint_id,
                    item.global_position,
                    item.event.event_type,
                    attempts,
                    self._max_attempts,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
            attempts += 1
            try:
                await self._apply([item.event], item.global_position, single=True)
                return
            except HandlerFailure as failure:
                error = failure.cause
                telemetry.handler_failed(error)

    async def _park(self, item: StreamEvent, error: BaseException, attempts: int) -> None:
        with telemetry.park_span(
            self._store.schema, self._subscription_id, item.event, error, attempts
        ):
            if self._exactly_once:
                conn = self._connection
                async with database_step(), conn.transaction():
                    await self._fence(conn)
                    await self._advance_checkpoints(item.global_position, connection=conn)
                    await self._dead_letters.park(
                        self._subscription_id, item.event, error, attempts, connection=conn
                    )
                self._moved(item.global_position)
            else:
                async with database_step():
                    await self._dead_letters.park(
                        self._subscription_id, item.event, error, attempts
                    )
        self._parked += 1

    async def _advanced(self, position: int) -> None:
        if position <= self._processed:
            return
        self._processed = position
        async with self._progress:
            self._progress.notify_all()

    async def _advance_checkpoints(self, position: int, *, connection: Any = None) -> None:
        """Move every checkpoint of this runner that is behind ``position`` to it, each fenced
        on where this runner last left it (:meth:`_moved` records the move once committed)."""
        behind = {name: at for name, at in self._positions.items() if at < position}
        if not behind:
            return
        if len(behind) == 1:
            ((name, at),) = behind.items()
            await self._checkpoints.advance(name, position, expected=at, connection=connection)
        else:
            await self._checkpoints.advance_many(behind, position, connection=connection)

    def _moved(self, position: int) -> None:
        for name, at in self._positions.items():
            if at < position:
                self._positions[name] = position
        self._committed = min(self._positions.values())

    async def _flush(self) -> None:
        """Write the checkpoint of everything processed (at-least-once, and skipped events).

        Fenced in both modes: when the stored checkpoint is no longer the one this runner
        wrote (reset, deleted, or moved by another consumer) it raises CheckpointError instead
        of writing over it, and the session resumes from the stored one.
        """
        position = self._processed
        if position > self._committed:
            async with database_step():
                await self._advance_checkpoints(position)
            self._moved(position)
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()


