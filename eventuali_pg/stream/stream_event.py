"""StreamEvent: an event as delivered to a subscriber, with its positions."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import Event


@dataclass(slots=True)
class StreamEvent:
    """One delivered event.

    ``event`` is an instance of the registered event class (a generic :class:`Event` when this
    process has no class for its type); ``stream_position`` is the aggregate version and
    ``global_position`` the position in the store's single global order.
    """

    event: Event
    stream_position: int
    global_position: int

    @classmethod
    def from_stored(cls, event: Event) -> StreamEvent:
        """Wrap an event loaded from the store (its positions are already set)."""
        assert event.global_position is not None
        return cls(event, event.aggregate_version, event.global_position)
