"""Events to rows: column arrays of the append statement, payloads encoded once as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from ..errors import PayloadTooLargeError, SerializationError
from ..models import ENVELOPE_FIELDS, Event

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
