"""Checks of caller-supplied arguments, done before anything touches the database.

Limits (what PostgreSQL's columns and indexes can hold, and what loads back equal):

* positions and limits: integers ``0 <= n <= 2**63 - 1`` (``bigint``);
* versions: integers up to ``2**31 - 1`` (``integer``), ``event_version`` at least 1;
* ids, types and names (aggregate id and type, event type, user, causation and correlation ids,
  name filters): strings of at most :data:`MAX_NAME_BYTES` UTF-8 bytes, valid UTF-8 (no lone
  surrogate) and without NUL characters;
* event timestamps: timezone-aware, strictly between ``datetime.min`` and ``datetime.max`` in
  UTC (asyncpg stores those two as -infinity/+infinity, which load back naive).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime

from ..errors import InvalidInputError
from ..models import Aggregate, Event

#: Largest global position (and row limit): PostgreSQL ``bigint``.
MAX_POSITION = 2**63 - 1
#: Largest aggregate or event version: PostgreSQL ``integer``.
MAX_VERSION = 2**31 - 1
#: Longest id, type or name, in UTF-8 bytes (btree index entries cannot exceed about 2,700).
MAX_NAME_BYTES = 1024

_MIN_TIMESTAMP = datetime.min.replace(tzinfo=UTC)
_MAX_TIMESTAMP = datetime.max.replace(tzinfo=UTC)


def _check_int(value: object, what: str, lowest: int, highest: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise InvalidInputError(
            f"{what} must be an integer from {lowest} to {highest}{hint}, got {value!r}"
        )
    return value


def check_position(value: object, *, what: str = "position") -> int:
    """A global position: an int from 0 to ``2**63 - 1``.

    A ``what`` ending in ``version`` (``from_version``) is an aggregate version instead, checked
    by :func:`check_version`.
    """
    if what.endswith("version"):
        return check_version(value, what=what)
    return _check_int(value, what, 0, MAX_POSITION, " (0 = from the start)")


def check_version(value: object, *, what: str, lowest: int = 0) -> int:
    """An aggregate or event version: an int from ``lowest`` to ``2**31 - 1``."""
    return _check_int(value, what, lowest, MAX_VERSION, "")


def check_limit(value: object) -> int | None:
    """A row limit: None (no limit) or an int from 0 to ``2**63 - 1``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POSITION:
        raise InvalidInputError(
            f"limit must be None or an integer from 0 to {MAX_POSITION}, got {value!r}"
        )
    return value


def check_text(value: object, *, what: str, allow_empty: bool = False) -> str:
    """A non-empty (unless ``allow_empty``) id, type or name PostgreSQL stores and indexes as
    given.

    It must be a string without NUL characters, valid UTF-8 (no lone surrogate) and at most
    :data:`MAX_NAME_BYTES` bytes long in UTF-8.
    """
    if not isinstance(value, str) or not (value or allow_empty):
        kind = "a string" if allow_empty else "a non-empty string"
        raise InvalidInputError(f"{what} must be {kind}, got {value!r}")
    if "\x00" in value:
        raise InvalidInputError(
            f"{what} {_shorten(value)} contains a NUL character (\\x00), which PostgreSQL text "
            "cannot store; remove it"
        )
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} {_shorten(value)} contains a lone surrogate ({exc.object[exc.start]!r}), "
            "which is not valid UTF-8; decode text with errors='replace' or fix its source"
        ) from None
    if size > MAX_NAME_BYTES:
        raise InvalidInputError(
            f"{what} {_shorten(value)} is {size} bytes long in UTF-8, over the limit of "
            f"{MAX_NAME_BYTES} bytes; use a shorter id (e.g. a UUID or a hash of the long one)"
        )
    return value


def _shorten(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."


def check_aggregate_id(value: object) -> str:
    """An aggregate id: a non-empty string PostgreSQL can store (see :func:`check_text`)."""
    return check_text(value, what="aggregate id")


def check_name_filter(value: object, *, what: str) -> list[str] | None:
    """None (no filter), one name, or a collection of names (not a mapping), as a list."""
    if value is None:
        return None
    names: Iterable[object] = [value] if isinstance(value, str) else _as_collection(value, what)
    result = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{what} must contain non-empty strings, got {name!r}")
        result.append(check_text(name, what=f"{what} entry"))
    if not result:
        raise InvalidInputError(f"{what} is empty: pass None to accept every value")
    return result


def _as_collection(value: object, what: str) -> Collection[object]:
    if (
        isinstance(value, (bytes, bytearray, Mapping))
        or not isinstance(value, Collection)
    ):
        raise InvalidInputError(
            f"{what} must be a string, a collection of strings (list, tuple, set) or None, "
            f"got {value!r}"
        )
    return value


def check_timestamp(value: object, *, what: str = "timestamp") -> datetime:
    """An event timestamp PostgreSQL stores exactly and loads back equal.

    It must be a timezone-aware datetime strictly between ``datetime.min`` and ``datetime.max``
    once converted to UTC.
    """
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(
            f"{what} must be a timezone-aware datetime, got {value!r}; use "
            "datetime.now(UTC) or attach a tzinfo"
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = _MIN_TIMESTAMP if value.year == 1 else _MAX_TIMESTAMP
    if not _MIN_TIMESTAMP < utc < _MAX_TIMESTAMP:
        raise InvalidInputError(
            f"{what} {value.isoformat()} is outside the range the store keeps exactly (strictly "
            "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in UTC; the limits "
            "themselves are stored as -infinity/+infinity); use a real time"
        )
    return value


def check_aggregate_class(cls: object) -> None:
    """An Aggregate subclass (the class to rebuild an aggregate with)."""
    if not (isinstance(cls, type) and issubclass(cls, Aggregate)):
        raise InvalidInputError(f"expected an Aggregate class, got {cls!r}")


def check_aggregates_to_save(
    aggregates: Iterable[Aggregate],
) -> list[tuple[Aggregate, list[Event]]]:
    """Aggregates with well-formed uncommitted events, each once, paired with those events;
    aggregates with none are skipped."""
    if isinstance(aggregates, Aggregate) or not isinstance(aggregates, Iterable):
        raise InvalidInputError(
            "save_all takes a collection of aggregates (save takes one aggregate), got "
            f"{type(aggregates).__name__}"
        )
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
        check_version(aggregate.version, what=f"version of aggregate {aggregate.id!r}")
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
    # The common case, every value fine, is checked without building any message (this runs
    # for every event of every save); the first doubt goes to the full check, which explains.
    if (
        isinstance(event, Event)
        and event.aggregate_id == aggregate.id
        and event.aggregate_version == version
        and type(version) is int
        and 1 <= version <= MAX_VERSION
        and type(event.event_version) is int
        and 1 <= event.event_version <= MAX_VERSION
        and _plain_text(event.event_type)
        and _plain_text(event.aggregate_type)
        and (event.user_id is None or _plain_text(event.user_id, empty=True))
        and (event.causation_id is None or _plain_text(event.causation_id, empty=True))
        and (event.correlation_id is None or _plain_text(event.correlation_id, empty=True))
        and isinstance(event.event_id, uuid.UUID)
        and isinstance(event.metadata, dict)
        and event.global_position is None
    ):
        timestamp = event.timestamp
        if not (
            type(timestamp) is datetime
            and timestamp.tzinfo is UTC
            and _MIN_TIMESTAMP < timestamp < _MAX_TIMESTAMP
        ):
            check_timestamp(timestamp)
        return
    _explain_event(aggregate, event, version)


def _plain_text(value: object, *, empty: bool = False) -> bool:
    """True for text :func:`check_text` accepts, decided cheaply for short ASCII text."""
    return (
        type(value) is str
        and (empty or bool(value))
        and value.isascii()
        and len(value) <= MAX_NAME_BYTES
        and "\x00" not in value
    )


def _explain_event(aggregate: Aggregate, event: Event, version: int) -> None:
    if not isinstance(event, Event):
        raise InvalidInputError(
            f"aggregate {aggregate.id!r} holds a {type(event).__name__} as an uncommitted "
            "event; record events only through apply()"
        )
    event_type = check_text(event.event_type, what="event_type")
    where = f"event {event_type!r} of aggregate {aggregate.id!r}"
    if event.aggregate_id != aggregate.id:
        raise InvalidInputError(
            f"event {event_type!r} belongs to aggregate {event.aggregate_id!r}, not "
            f"{aggregate.id!r}; record events only through apply()"
        )
    if event.aggregate_version != version:
        raise InvalidInputError(
            f"{where} has version {event.aggregate_version}, expected {version}; record events "
            "only through apply()"
        )
    check_version(version, what=f"aggregate_version of {where}", lowest=1)
    check_version(event.event_version, what=f"event_version of {where}", lowest=1)
    if not event.aggregate_type:
        raise InvalidInputError(f"event {event_type!r} has an empty aggregate_type")
    check_text(event.aggregate_type, what=f"aggregate_type of {where}")
    for name in ("user_id", "causation_id", "correlation_id"):
        value = getattr(event, name)
        if value is not None:
            check_text(value, what=f"{name} of {where}", allow_empty=True)
    if not isinstance(event.event_id, uuid.UUID):
        raise InvalidInputError(f"event_id of {where} must be a UUID, got {event.event_id!r}")
    check_timestamp(event.timestamp, what=f"timestamp of {where}")
    if not isinstance(event.metadata, dict):
        raise InvalidInputError(
            f"metadata of {where} must be a dict, got {type(event.metadata).__name__}"
        )
    if event.global_position is not None:
        raise InvalidInputError(
            f"event {event.event_id} of aggregate {aggregate.id!r} is already stored at global "
            f"position {event.global_position}; apply a new event instead"
        )
