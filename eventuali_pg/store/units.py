"""Save units: checked aggregates' uncommitted events, stamped and encoded for one append.

Events with personal fields get the keys of their subjects first (see :mod:`.keys`): read
from the cache, or read and created in the database (on the caller's transaction when the
save runs in one). Events of classes without personal fields pay one attribute test.
"""

from __future__ import annotations

from typing import Any

from .. import telemetry
from ..codec import EncodedBatch
from ..codec.personal import SubjectKey
from ..context import stamp_events
from ..models import Aggregate, Event
from ..personal import subjects_of
from .appender import SaveUnit
from .keys import KeyRing

Pending = list[tuple[Aggregate, list[Event]]]


def events_of(pending: Pending) -> list[Event]:
    """The events of ``pending``, in order, stamped with the enclosing event context."""
    events: list[Event] = []
    for _, uncommitted in pending:
        events += uncommitted
    stamp_events(events)
    telemetry.inject_trace_context(events)
    return events


def unit_of(
    pending: Pending,
    events: list[Event],
    keys: dict[str, SubjectKey] | None,
    *,
    max_payload_bytes: int,
) -> SaveUnit | None:
    """The encoded save unit of ``pending`` (None when empty); raises before anything is
    written when an event cannot be stored."""
    if not pending:
        return None
    batch = EncodedBatch()
    expected = [aggregate.version - len(uncommitted) for aggregate, uncommitted in pending]
    for event in events:
        batch.add(event, max_payload_bytes=max_payload_bytes, keys=keys)
    unit = SaveUnit([aggregate for aggregate, _ in pending], expected, events, batch)
    if keys:
        unit.subjects = [(key.subject_id, key.generation) for key in keys.values()]
    return unit


async def prepare(
    pending: Pending, keyring: KeyRing, *, max_payload_bytes: int, connection: Any = None
) -> SaveUnit | None:
    """:func:`unit_of` after getting (or creating) the keys of the subjects of the personal
    fields of ``pending`` (on ``connection`` when given)."""
    if not pending:
        return None
    events = events_of(pending)
    keys = None
    if any(type(event).__personal__ for event in events):
        keys = await keyring.for_write(subjects_of(events), connection)
    return unit_of(pending, events, keys, max_payload_bytes=max_payload_bytes)
