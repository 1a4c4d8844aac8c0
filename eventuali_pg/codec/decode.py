"""Rows to events: the one place stored rows become event objects.

A row whose payload no longer fits its registered class (a rolling deploy added a required
field; an old row has a value the class now refuses) is not an error here: it becomes a generic
:class:`Event` with every stored field kept and a :class:`DecodeError` attached
(``event.decode_error``). Each consumer decides what that means (see :func:`require_decoded`):
receivers deliver it, projections park it, ``load()`` refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from ..errors import DecodeError
from ..models import Event, _registry
from ..personal import ERASED
from ..upcasting import has_upcaster, upcast
from .personal import MARKER_TEXT, KeySource, reveal

_NOTHING_ERASED: frozenset[str] = frozenset()


def record_to_event(record: Any, keys: KeySource | None = None) -> Event:
    """Build the event (of its registered class, else a generic Event) from a stored row.

    ``record`` has the columns of :data:`eventuali_pg.store.sql.EVENT_COLUMNS`, in that order.
    Personal fields are decrypted with the ciphers ``keys`` gives (see
    :mod:`eventuali_pg.codec.personal`); without ``keys``, or for a forgotten subject, they
    read as their erased form and are listed in ``event.erased_fields``.
    """
    (
        global_position,
        event_id,
        aggregate_id,
        aggregate_type,
        aggregate_version,
        event_type,
        event_version,
        payload,
        causation_id,
        correlation_id,
        user_id,
        metadata,
        occurred_at,
        recorded_at,
    ) = record
    data = from_json(payload)
    stored_type, stored_version = event_type, event_version
    failure: str | None = None
    erased = _NOTHING_ERASED
    cls = _registry.get(event_type)
    upcasting = has_upcaster(event_type, event_version)
    try:
        if cls is None or upcasting:  # no class to ask: look for encrypted values
            if MARKER_TEXT in payload:
                erased, _ = reveal(data, None, event_id, keys)
        elif cls.__personal__:
            erased, _ = reveal(data, cls.__personal__, event_id, keys)
    except ValueError as exc:
        failure = str(exc)
    if upcasting and failure is None:
        try:
            event_type, event_version, data = upcast(event_type, event_version, data)
        except ValueError as exc:
            failure = str(exc)
        cls = _registry.get(event_type)
        if erased and cls is not None and cls.__personal__:
            for field in cls.__personal__:  # erased before upcasting: the class's own form
                if field.key in erased and data.get(field.key) == ERASED:
                    data[field.key] = field.erased
    data["event_id"] = event_id
    data["aggregate_id"] = aggregate_id
    data["aggregate_type"] = aggregate_type
    data["aggregate_version"] = aggregate_version
    data["event_type"] = event_type
    data["event_version"] = event_version
    data["global_position"] = global_position
    data["timestamp"] = occurred_at
    data["causation_id"] = causation_id
    data["correlation_id"] = correlation_id
    data["user_id"] = user_id
    data["metadata"] = {} if metadata == "{}" else from_json(metadata)
    data["recorded_at"] = recorded_at
    if failure is None:
        if cls is not None and cls.__versioned__ and event_version > cls.__event_version__:
            failure = (
                f"it is stored at event_version {event_version}, newer than this process's "
                f"{cls.__qualname__} knows ({cls.__event_version__}): the event was written by "
                "newer code; deploy it here too"
            )
        else:
            try:
                event = (cls or Event).__pydantic_validator__.validate_python(data)
            except ValidationError as exc:
                failure = "; ".join(
                    f"{'.'.join(str(part) for part in error['loc']) or '(event)'}: "
                    f"{error['msg']}"
                    for error in exc.errors(include_url=False)
                )
            else:
                if event_version != stored_version:
                    object.__setattr__(event, "_stored_event_version", stored_version)
                if erased:
                    object.__setattr__(event, "_erased_fields", erased)
                return event  # type: ignore[no-any-return]
    if (event_type, event_version) != (stored_type, stored_version):
        failure = f"(upcast from {stored_type!r} version {stored_version}) {failure}"
    return _undecodable(data, failure)


def records_to_events(records: Sequence[Any], keys: KeySource | None = None) -> list[Event]:
    """:func:`record_to_event` for each row, in order."""
    return [record_to_event(record, keys) for record in records]


def require_decoded(event: Event) -> Event:
    """``event`` itself, or its :class:`DecodeError` raised (for paths that need the class)."""
    error = event.decode_error
    if error is not None:
        raise error
    return event


def _undecodable(data: dict[str, Any], problems: str) -> Event:
    event_type = str(data["event_type"])
    error = DecodeError(
        f"stored event {event_type!r} (event_version {data['event_version']}) at global "
        f"position {data['global_position']} of aggregate {data['aggregate_id']!r} does not fit "
        f"the event class registered for it in this process: {problems}. Make the class accept "
        "the stored payload (a default for a new field, or an upcaster), or deploy the class "
        "that wrote it",
        event_type=event_type,
        event_version=int(data["event_version"]),
        global_position=data["global_position"],
        aggregate_id=str(data["aggregate_id"]),
    )
    try:
        event = Event.__pydantic_validator__.validate_python(data)
    except ValidationError:  # the envelope itself is broken: keep what can be kept
        event = Event.model_construct(**data)
    object.__setattr__(event, "_decode_error", error)  # see Event._decode_error
    return event  # type: ignore[no-any-return]
