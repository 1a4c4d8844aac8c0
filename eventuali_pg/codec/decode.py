"""Rows to events: the one place stored rows become event objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import from_json

from ..models import Event, event_from_row


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
