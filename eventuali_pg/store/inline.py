"""Inline projections: read models written in the same transaction as the events they follow.

A registered handler (a :class:`~eventuali_pg.TransactionalProjection`, or anything with the
same ``handle_batch(events, connection)``) is called with the matching events of every save,
on the connection and inside the transaction that carries them: plain saves (the writer then
appends each group in a transaction of its own, every save in a savepoint), coalesced saves,
and saves in the application's own transaction. The read model is therefore never behind the
events and never ahead of them. The handler runs before the commit gives the events their
positions: ``global_position`` is None while it runs (key rows by ``event_id`` or aggregate id
and version). A handler error rolls back that save alone (its savepoint) and reaches its
caller as the handler's own exception.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InvalidInputError
from ..models import Event
from ..personal import FORGET_EVENT_TYPE, forgotten_subject
from .validation import check_name_filter


class InlineHandler(Protocol):
    """What an inline projection needs: a batch handler writing through ``connection``."""

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        """Write the read model for ``events`` through ``connection`` (do not commit)."""


@dataclass(frozen=True)
class InlineProjection:
    """A registered inline handler and the events it wants."""

    handler: InlineHandler
    aggregate_types: frozenset[str] | None = None
    event_types: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        handler: InlineHandler,
        *,
        aggregate_type_filter: str | Collection[str] | None = None,
        event_type_filter: str | Collection[str] | None = None,
    ) -> InlineProjection:
        """Validate ``handler`` and its filters."""
        if not callable(getattr(handler, "handle_batch", None)):
            raise InvalidInputError(
                "an inline projection needs an async handle_batch(events, connection) method "
                f"(a TransactionalProjection), got {type(handler).__name__}"
            )
        aggregates = check_name_filter(aggregate_type_filter, what="aggregate_type_filter")
        events = check_name_filter(event_type_filter, what="event_type_filter")
        return cls(
            handler,
            frozenset(aggregates) if aggregates else None,
            frozenset(events) if events else None,
        )

    def matching(self, events: Sequence[Event]) -> list[Event]:
        """The events this projection handles, in order."""
        return [
            event
            for event in events
            if (self.aggregate_types is None or event.aggregate_type in self.aggregate_types)
            and (self.event_types is None or event.event_type in self.event_types)
        ]


async def run_inline(
    projections: Sequence[InlineProjection], events: Sequence[Event], connection: Any
) -> None:
    """Call every inline projection with its matching events, on ``connection``.

    The ``SubjectForgotten`` event of :meth:`EventStore.forget` (saved alone) goes to every
    projection's ``on_forget(subject_id, connection)`` instead, whatever its filters: the read
    models are erased in the transaction that destroys the key."""
    if len(events) == 1 and events[0].event_type == FORGET_EVENT_TYPE:
        subject = forgotten_subject(events[0])
        for projection in projections:
            on_forget = getattr(projection.handler, "on_forget", None)
            if on_forget is not None:
                await on_forget(subject, connection)
        return
    for projection in projections:
        matching = projection.matching(events)
        if matching:
            await projection.handler.handle_batch(matching, connection)
