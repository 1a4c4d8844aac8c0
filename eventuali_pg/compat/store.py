"""Upstream eventuali's EventStore methods, mixed into :class:`eventuali_pg.EventStore`.

Kept apart from the store's own code so the two evolve independently.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from ..errors import ConfigurationError, InvalidInputError
from ..models import (
    Event,
    refuse_naive,
    register_event_class,
    registered_event_classes,
    unregister_event_class,
)
from ..store.codec import records_to_events
from ..store.sql import EVENT_COLUMNS
from ..store.validation import check_name_filter, check_position

if TYPE_CHECKING:
    import asyncpg


class UpstreamStoreMethods:
    """``load_events_by_type``, ``register_event_class`` and friends (upstream's names and
    arguments), and the timestamp lookup behind ``Subscription(from_timestamp=...)``."""

    if TYPE_CHECKING:

        @property
        def schema(self) -> str: ...

        async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

        async def _fetchval(self, query: str, *args: Any) -> Any: ...

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """Refuse ``EventStore()`` with no arguments (upstream's two-step construction) with a
        message naming the one way to open a store."""
        if not args and not kwargs:
            raise ConfigurationError(
                f"{cls.__name__}() opens nothing: create a store with "
                f"`store = await {cls.__name__}.create('postgresql://user:password@host/db')` "
                "(the DSN may also come from EVENTUALI_PG_DSN)"
            )
        return super().__new__(cls)

    async def load_events_by_type(
        self, aggregate_type: str, from_version: int | None = None
    ) -> list[Event]:
        """Every event of aggregates of type ``aggregate_type``, as upstream eventuali's method.

        Ordered by the events' own ``timestamp``, ascending (upstream's order), ties in global
        order. With ``from_version`` only events with an aggregate version above it (in every
        aggregate of the type). For the commit order use ``load_events_from_position(0,
        aggregate_types=...)`` instead.
        """
        names = check_name_filter(aggregate_type, what="aggregate_type")
        if not isinstance(aggregate_type, str):
            raise InvalidInputError(
                f"aggregate_type must be a non-empty string, got {aggregate_type!r}"
            )
        assert names is not None
        version = 0 if from_version is None else check_position(from_version, what="from_version")
        query = (
            f"SELECT {EVENT_COLUMNS} FROM {self.schema}.events "
            "WHERE aggregate_type = $1 AND aggregate_version > $2 "
            "ORDER BY occurred_at, global_position"
        )
        return records_to_events(await self._fetch(query, aggregate_type, version))

    async def position_before_timestamp(self, timestamp: datetime) -> int:
        """The global position just before the first event recorded at or after ``timestamp``
        (by ``recorded_at``, the commit-time clock of the server); the current head when no
        event is that recent. A naive ``timestamp`` is refused (:class:`InvalidEventError`).

        Subscribing from the returned position delivers every event recorded since
        ``timestamp``, then continues live.
        """
        moment = refuse_naive(timestamp, what="from_timestamp")
        if not isinstance(moment, datetime):
            raise InvalidInputError(f"timestamp must be a datetime, got {timestamp!r}")
        query = (
            f"SELECT COALESCE((SELECT min(global_position) FROM {self.schema}.events "
            "WHERE recorded_at >= $1) - 1, "
            f"(SELECT position FROM {self.schema}.global_sequence WHERE id = 1), 0)"
        )
        return int(await self._fetchval(query, moment))

    @classmethod
    def register_event_class(cls, event_type: str, event_class: type[Event]) -> None:
        """Load events stored under ``event_type`` as ``event_class`` (upstream's API).

        Event classes already register themselves under their class name (or
        ``event_type=...``); use this for another name, e.g. ``"agent.commandReceived"``. An
        explicit registration wins over the automatic one until unregistered.
        """
        register_event_class(event_type, event_class)

    @classmethod
    def unregister_event_class(cls, event_type: str) -> None:
        """Remove an explicit registration (the automatic one, if any, applies again)."""
        unregister_event_class(event_type)

    @classmethod
    def get_registered_event_classes(cls) -> dict[str, type[Event]]:
        """A copy of the explicit registrations (event type to class), as upstream returns."""
        return registered_event_classes()
