"""Correlation, causation and user ids stamped on every event saved inside a context.

Request middleware sets them once; every ``store.save`` in that request (in the same task, or in
tasks it creates, since asyncio copies context variables into new tasks) stamps them::

    with event_context(correlation_id=request_id, user_id=current_user):
        await store.save(order)

An event that already carries a value keeps it; a context only fills what is empty. Contexts
nest: an inner one overrides the fields it sets and inherits the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

from .errors import InvalidInputError
from .models import Event

__all__ = ["EventContext", "current_event_context", "event_context", "stamp_events"]


@dataclass(frozen=True)
class EventContext:
    """The ids stamped on events saved inside :func:`event_context` (None: not set)."""

    correlation_id: str | None = None
    causation_id: str | None = None
    user_id: str | None = None


_EMPTY = EventContext()
_current: ContextVar[EventContext] = ContextVar("eventuali_pg_event_context", default=_EMPTY)


def current_event_context() -> EventContext:
    """The context in force in this task (all None outside any :func:`event_context`)."""
    return _current.get()


@contextlib.contextmanager
def event_context(
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    user_id: str | None = None,
) -> Iterator[EventContext]:
    """Stamp ``correlation_id``, ``causation_id`` and ``user_id`` on every event saved inside
    the block whose own field is None. Arguments left None keep the enclosing context's value.

    Works with ``with`` in synchronous and asynchronous code alike (it sets a context variable,
    so concurrent requests never see each other's ids).
    """
    changes: dict[str, str] = {}
    for name, value in (
        ("correlation_id", correlation_id),
        ("causation_id", causation_id),
        ("user_id", user_id),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise InvalidInputError(
                f"event_context({name}=...) must be a non-empty string or None, got {value!r}"
            )
        changes[name] = value
    context = replace(_current.get(), **changes)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def stamp_events(events: Iterable[Event]) -> None:
    """Fill the empty correlation, causation and user ids of ``events`` from the current
    context (called by the store before it encodes a save)."""
    context = _current.get()
    if context is _EMPTY:
        return
    for event in events:
        if event.correlation_id is None and context.correlation_id is not None:
            event.correlation_id = context.correlation_id
        if event.causation_id is None and context.causation_id is not None:
            event.causation_id = context.causation_id
        if event.user_id is None and context.user_id is not None:
            event.user_id = context.user_id
