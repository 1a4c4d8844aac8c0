"""Checks of caller-supplied arguments, done before anything touches the database."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from ..errors import InvalidEventError, InvalidInputError
from ..models import Aggregate, Event


def check_position(value: object, *, what: str = "position") -> int:
    """A global position: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"{what} must be an integer >= 0 (0 = from the start), got {value!r}"
        )
    return value


def check_limit(value: object) -> int | None:
    """A row limit: None (no limit) or an int >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"limit must be None or an integer >= 0, got {value!r}")
    return value


def check_aggregate_id(value: object) -> str:
    """An aggregate id: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"aggregate id must be a non-empty string, got {value!r}")
    return value


def check_name_filter(value: object, *, what: str) -> list[str] | None:
    """None (no filter), one name, or a collection of names, as a list."""
    if value is None:
        return None
    names: Iterable[object] = [value] if isinstance(value, str) else _as_collection(value, what)
    result = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{what} must contain non-empty strings, got {name!r}")
        result.append(name)
    if not result:
        raise InvalidInputError(f"{what} is empty: pass None to accept every value")
    return result


def _as_collection(value: object, what: str) -> Collection[object]:
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Collection):
        raise InvalidInputError(
            f"{what} must be a string, a collection of strings or None, got {value!r}"
        )
    return value


def check_aggregates_to_save(
    aggregates: Iterable[Aggregate],
) -> list[tuple[Aggregate, list[Event]]]:
    """Aggregates with well-formed uncommitted events, each once, paired with those events;
    aggregates with none are skipped."""
    seen: set[str] = set()
    pending: list[tuple[Aggregate, list[Event]]] = []
    for aggregate in aggregates:
        if not isinstance(aggregate, Aggregate):
            raise InvalidInputError(f"expected an Aggregate, got {type(aggregate).__name__}")
        check_aggregate_id(aggregate.id)
        if aggregate.id in seen:
            raise InvalidInputError(
                f"aggregate {aggregate.id!r} appears twice in one save; apply all its events to "
                "one instance"
            )
        seen.add(aggregate.id)
        events = aggregate.get_uncommitted_events()
        if not events:
            continue
        expected = aggregate.version - len(events)
        if expected < 0:
            raise InvalidInputError(
                f"aggregate {aggregate.id!r} is at version {aggregate.version} but has "
                f"{len(events)} uncommitted events; record events only through apply()"
            )
        for offset, event in enumerate(events, start=1):
            _check_event(aggregate, event, expected + offset)
        pending.append((aggregate, events))
    return pending


def _check_event(aggregate: Aggregate, event: Event, version: int) -> None:
    if event.aggregate_id != aggregate.id:
        raise InvalidInputError(
            f"event {event.event_type!r} belongs to aggregate {event.aggregate_id!r}, not "
            f"{aggregate.id!r}; record events only through apply()"
        )
    if event.aggregate_version != version:
        raise InvalidInputError(
            f"event {event.event_type!r} of aggregate {aggregate.id!r} has version "
            f"{event.aggregate_version}, expected {version}; record events only through apply()"
        )
    if not event.aggregate_type:
        raise InvalidInputError(f"event {event.event_type!r} has an empty aggregate_type")
    timestamp: object = event.timestamp
    if not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
        raise InvalidEventError(
            f"event {event.event_type!r} of aggregate {aggregate.id!r} has timestamp "
            f"{timestamp!r}; the envelope field timestamp must be a timezone-aware datetime "
            "(datetime.now(timezone.utc)). A class that redeclares timestamp (e.g. as str) "
            "should give its own field another name"
        )
    if event.global_position is not None:
        raise InvalidInputError(
            f"event {event.event_id} of aggregate {aggregate.id!r} is already stored at global "
            f"position {event.global_position}; apply a new event instead"
        )
