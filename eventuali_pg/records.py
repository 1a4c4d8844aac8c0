"""One documented JSON shape per event, shared by ``eventuali-pg tail --json``, ``events
--json`` and the server-sent events of :mod:`eventuali_pg.web`.

``event_to_record(event)`` gives a dict with exactly these keys: ``global_position``,
``aggregate_type``, ``aggregate_id``, ``aggregate_version``, ``event_type``, ``event_version``,
``event_id`` (string), ``timestamp`` and ``recorded_at`` (ISO 8601 strings with a UTC offset,
``recorded_at`` None before the event is stored), ``causation_id``, ``correlation_id``,
``user_id``, ``metadata`` (object) and ``payload`` (object: :meth:`Event.payload`, datetimes,
UUIDs and Decimals as strings); an event whose personal fields were erased (its subject
forgotten) also has ``erased_fields`` (their names, sorted). ``event_to_json(event)`` is that
dict as compact JSON on one line.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .models import Event

__all__ = ["RECORD_KEYS", "event_to_json", "event_to_record"]

#: The keys of :func:`event_to_record`, in order.
RECORD_KEYS: tuple[str, ...] = (
    "global_position",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "event_type",
    "event_version",
    "event_id",
    "timestamp",
    "recorded_at",
    "causation_id",
    "correlation_id",
    "user_id",
    "metadata",
    "payload",
)


def event_to_record(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict: its envelope, ``metadata`` and ``payload``."""
    return {
        "global_position": event.global_position,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "event_id": str(event.event_id),
        "timestamp": _iso(event.timestamp),
        "recorded_at": _iso(event.recorded_at),
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "user_id": event.user_id,
        "metadata": event.metadata,
        "payload": event.payload(),
    } | (
        # only on an event upcasters brought up to date: the version it is stored at
        {"stored_event_version": event.stored_event_version}
        if event.stored_event_version != event.event_version
        else {}
    ) | (
        # only on an event whose subject was forgotten: the personal fields erased
        {"erased_fields": sorted(event.erased_fields)} if event.erased_fields else {}
    )


def event_to_json(event: Event) -> str:
    """:func:`event_to_record` as compact JSON on one line (the line of ``tail --json``)."""
    return json.dumps(
        event_to_record(event), separators=(",", ":"), ensure_ascii=False, default=str
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
