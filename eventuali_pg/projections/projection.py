"""Projections: read models built from the event stream, in two delivery modes.

* :class:`Projection` (at-least-once): handlers with effects outside the event store's database
  (e-mails, other services, caches). After a crash, the events since the last checkpoint are
  handled again.
* :class:`TransactionalProjection` (exactly-once): handlers write their read model through the
  connection they are given, inside the transaction that also moves the checkpoint.

Both keep the method names of the Eventuali ``Projection`` (``handle_event``, ``reset``,
``get_last_processed_position``, ``set_last_processed_position``). Run them with a
:class:`~eventuali_pg.projections.ProjectionRunner`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..models import Event
from ..store.validation import check_position

if TYPE_CHECKING:
    from .checkpoints import CheckpointStore


class _Positioned:
    """The position methods: the runner's checkpoint once bound, else a value in memory."""

    #: The projection's version: a new version rebuilds its own read model side by side with
    #: the old one (see :mod:`eventuali_pg.projections.versions`).
    version: int = 1
    #: True: events replayed (up to the head when this version first started) are not handed
    #: to the handler at all (a handler with side effects that must not repeat).
    skip_replay: bool = False
    #: Set by the runner while the handler is called: True for replayed events.
    replaying: bool = False

    _checkpoints: CheckpointStore | None = None
    _checkpoint_ids: list[str] | None = None
    _memory_position: int | None = None

    def _bind(self, checkpoints: CheckpointStore, checkpoint_ids: list[str]) -> None:
        self._checkpoints = checkpoints
        self._checkpoint_ids = checkpoint_ids

    async def get_last_processed_position(self) -> int | None:
        """The global position processed last (the stored checkpoint once a runner has bound
        the projection; for a group member, the lowest of its partitions'), None before any."""
        if self._checkpoints is not None and self._checkpoint_ids:
            positions = [await self._checkpoints.get(name) for name in self._checkpoint_ids]
            if all(position is None for position in positions):
                return None
            return min(position or 0 for position in positions)
        return self._memory_position

    async def set_last_processed_position(self, position: int) -> None:
        """Move the checkpoint forward to ``position``.

        Raises :class:`~eventuali_pg.CheckpointError` when that would move it backwards; the
        runner calls this itself, applications rarely need to.
        """
        check_position(position)
        if self._checkpoints is not None and self._checkpoint_ids:
            for name in self._checkpoint_ids:
                await self._checkpoints.advance(name, position)
            return
        if self._memory_position is not None and position < self._memory_position:
            from ..errors import CheckpointError

            raise CheckpointError(
                f"last processed position is {self._memory_position}; {position} would move it "
                "backwards"
            )
        self._memory_position = position


class Projection(_Positioned, ABC):
    """An at-least-once projection: override :meth:`handle_event` (and optionally
    :meth:`handle_batch` and :meth:`reset`).

    Every event is handled at least once. After a crash, events handled since the last
    checkpoint are handled again, so handlers should be idempotent.
    """

    @abstractmethod
    async def handle_event(self, event: Event) -> None:
        """Handle one event. Raise to have it retried (and parked after the last attempt)."""

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Handle several events in global order; by default one :meth:`handle_event` each.

        Override for throughput (one bulk write instead of many). If it raises, the runner
        handles the events one at a time to find the failing one.
        """
        for event in events:
            await self.handle_event(event)

    async def reset(self) -> None:
        """Forget the read model before a rebuild from position 0 (default: nothing)."""

    async def on_forget(self, subject_id: str) -> None:
        """Erase what the read model holds of ``subject_id``, whose key
        :meth:`EventStore.forget` destroyed (default: nothing).

        Called in the event order: after every event written with the subject's key, before
        any written after. At least once (again after a crash, and by every member of a
        consumer group), so make it idempotent. Raising retries it and parks it like an event.
        """


class TransactionalProjection(_Positioned, ABC):
    """An exactly-once projection: every handler gets ``connection``, an asyncpg connection in
    an open transaction of the event store's database.

    Write the read model through that connection only. The runner moves the checkpoint in the
    same transaction, so each event's effects are committed exactly once: a crash before the
    commit undoes both, a crash after it keeps both. Do not commit, roll back or close the
    connection yourself.
    """

    @abstractmethod
    async def handle_event(self, event: Event, connection: Any) -> None:
        """Handle one event, writing through ``connection``. Raise to roll it back and retry."""

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        """Handle several events in one transaction; by default one :meth:`handle_event` each.

        If it raises, the transaction is rolled back and the runner handles the events one at
        a time (one transaction each) to find the failing one.
        """
        for event in events:
            await self.handle_event(event, connection)

    async def reset(self, connection: Any) -> None:
        """Empty the read model before a rebuild from position 0, in the transaction that also
        resets the checkpoint (default: nothing)."""

    async def on_forget(self, subject_id: str, connection: Any) -> None:
        """Erase what the read model holds of ``subject_id``, whose key
        :meth:`EventStore.forget` destroyed, through ``connection`` (default: nothing).

        Runs in the transaction that moves the checkpoint past the ``SubjectForgotten``
        event (inline: in the transaction of the forget itself), in the event order: after
        every event written with the subject's key, before any written after. Every member
        of a consumer group calls it, so make it idempotent.
        """


AnyProjection = Projection | TransactionalProjection
