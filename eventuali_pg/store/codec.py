"""Turning events into column arrays for the append statement, and rows back into events."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from ..errors import PayloadTooLargeError, SerializationError
from ..models import ENVELOPE_FIELDS, Event, event_from_row

_ENVELOPE: set[str] = set(ENVELOPE_FIELDS)


@dataclass
class EncodedBatch:
    """Column arrays of a batch of events, in append order."""

    event_ids: list[Any] = field(default_factory=list)
    aggregate_ids: list[str] = field(default_factory=list)
    aggregate_types: list[str] = field(default_factory=list)
    aggregate_versions: list[int] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    event_versions: list[int] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)
    causation_ids: list[str | None] = field(default_factory=list)
    correlation_ids: list[str | None] = field(default_factory=list)
    user_ids: list[str | None] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    occurred_at: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)

    def columns(self) -> tuple[list[Any], ...]:
        """The arrays in the order of the append statement's parameters ``$4..$15``."""
        return (
            self.event_ids,
            self.aggregate_ids,
            self.aggregate_types,
            self.aggregate_versions,
            self.event_types,
            self.event_versions,
            self.payloads,
            self.causation_ids,
            self.correlation_ids,
            self.user_ids,
            self.metadata,
            self.occurred_at,
        )

    def add(self, event: Event, *, max_payload_bytes: int) -> None:
        """Encode ``event`` and append its columns; raise before anything is stored if it can't."""
        payload = _encode_json(
            lambda: event.model_dump_json(exclude=_ENVELOPE).encode(), event, "payload"
        )
        metadata = (
            _encode_json(lambda: to_json(event.metadata), event, "metadata")
            if event.metadata
            else "{}"
        )
        size = len(payload) + len(metadata)
        if size > max_payload_bytes:
            raise PayloadTooLargeError(
                f"event {event.event_type!r} of aggregate {event.aggregate_id!r} encodes to "
                f"{size} bytes, over the store's limit of {max_payload_bytes} bytes; keep large "
                "blobs outside the event store and store a reference, or raise "
                "max_payload_bytes when creating the store",
                size=size,
                limit=max_payload_bytes,
            )
        self.event_ids.append(event.event_id)
        self.aggregate_ids.append(event.aggregate_id)
        self.aggregate_types.append(event.aggregate_type)
        self.aggregate_versions.append(event.aggregate_version)
        self.event_types.append(event.event_type)
        self.event_versions.append(event.event_version)
        self.payloads.append(payload)
        self.causation_ids.append(event.causation_id)
        self.correlation_ids.append(event.correlation_id)
        self.user_ids.append(event.user_id)
        self.metadata.append(metadata)
        self.occurred_at.append(event.timestamp)


def _encode_json(produce: Callable[[], bytes], event: Event, what: str) -> str:
    try:
        encoded = produce()
        if b"NaN" in encoded or b"Infinity" in encoded:
            # Non-finite floats come out as bare NaN/Infinity, which jsonb refuses; the same
            # letters inside a string are fine, so only a real parse can tell.
            json.loads(encoded, parse_constant=_reject_constant)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise SerializationError(
            f"the {what} of event {event.event_type!r} cannot be stored as JSON: {exc}. Use "
            "JSON-compatible field types (str, int, float, bool, None, lists, dicts, datetime, "
            "UUID, Decimal, pydantic models) and finite numbers"
        ) from exc
    if b"\\u0000" in encoded:
        raise SerializationError(
            f"the {what} of event {event.event_type!r} contains a NUL character (\\u0000), "
            "which PostgreSQL's jsonb cannot store; remove it or encode the value (e.g. base64)"
        )
    return str(encoded, "utf-8")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


def record_to_event(record: Any) -> Event:
    """Build the event (of its registered class, else a generic Event) from a stored row.

    ``record`` has the columns of :data:`eventuali_pg.store.sql.EVENT_COLUMNS`, in that order.
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
    return event_from_row(event_type, data)


def records_to_events(records: Sequence[Any]) -> list[Event]:
    """:func:`record_to_event` for each row, in order."""
    return [record_to_event(record) for record in records]
