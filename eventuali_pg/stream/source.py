"""What a streamer needs from a store: reading history after a position."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from ..models import Event


class EventSource(Protocol):
    """The read side a streamer uses to catch receivers up (implemented by EventStore)."""

    async def load_events_from_position(
        self,
        position: int,
        limit: int | None = None,
        *,
        aggregate_types: Collection[str] | None = None,
        event_types: Collection[str] | None = None,
        up_to: int | None = None,
    ) -> list[Event]:
        """Events after ``position`` and at most ``up_to``, ascending."""
        ...

    async def get_global_position(self) -> int:
        """The highest committed global position (0 when empty)."""
        ...

    async def get_stream_position_at(self, aggregate_id: str, up_to: int) -> int | None:
        """The aggregate's version among events at or below global position ``up_to``."""
        ...
