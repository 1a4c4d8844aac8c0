"""Upstream eventuali's EventStore methods, mixed into :class:`eventuali_pg.EventStore`.

Kept apart from the store's own code so the two evolve independently.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, MutableMapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, NoReturn, Protocol, Self, cast

from ..errors import InvalidInputError, StoreNotInitializedError
from ..models import Event
from ..store.validation import check_name_filter, check_position
from . import registry
from .registry import register_event_class, registered_event_classes, unregister_event_class
from .values import refuse_naive

_PAGE = 1000


class _PublicStore(Protocol):
    """The parts of EventStore's public API these methods are built on (nothing internal, so
    the store's own code can change freely)."""

    @property
    def schema(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    async def load_events_from_position(
        self, position: int, limit: int | None = None, *, aggregate_types: Collection[str]
    ) -> list[Event]: ...

    def connection(self) -> AbstractAsyncContextManager[Any]: ...


class _ExplicitRegistry(MutableMapping[str, type[Event]]):
    """``EventStore._event_registry``: upstream's class-level dict of explicit registrations,
    as a view whose changes go through register/unregister_event_class."""

    def __getitem__(self, event_type: str) -> type[Event]:
        return registry._explicit[event_type]

    def __setitem__(self, event_type: str, event_class: type[Event]) -> None:
        register_event_class(event_type, event_class)

    def __delitem__(self, event_type: str) -> None:
        if event_type not in registry._explicit:
            raise KeyError(event_type)
        unregister_event_class(event_type)

    def __iter__(self) -> Iterator[str]:
        return iter(list(registry._explicit))

    def __len__(self) -> int:
        return len(registry._explicit)

    def copy(self) -> dict[str, type[Event]]:
        """A plain dict of the registrations."""
        return registered_event_classes()


_NOT_INITIALIZED = (
    "EventStore not initialized: EventStore() only makes a placeholder. Open a store with "
    "`store = await EventStore.create('postgresql://user:password@host/db')` (the DSN may also "
    "come from EVENTUALI_PG_DSN)"
)


class UpstreamStoreMethods:
    """``load_events_by_type``, ``register_event_class`` and friends (upstream's names and
    arguments), and the timestamp lookup behind ``Subscription(from_timestamp=...)``."""

    #: Upstream's class-level registry of explicit registrations (a live view).
    _event_registry: ClassVar[MutableMapping[str, type[Event]]] = _ExplicitRegistry()

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """``EventStore()`` with no arguments (upstream's two-step construction) gives a
        placeholder whose every use raises :class:`StoreNotInitializedError` naming
        :meth:`create`, as upstream's does."""
        if not args and not kwargs:
            placeholder: type[Self] = _placeholder_class(cls)
            return super().__new__(placeholder)
        return super().__new__(cls)

    @property
    def _initialized(self) -> bool:
        """Upstream's flag: True for a store made by ``create()`` and not closed yet."""
        return not cast(_PublicStore, self).closed

    def _ensure_initialized(self) -> None:
        """Upstream's check: raise unless the store was made by ``create()`` (a closed store
        raises :class:`StoreClosedError` on use)."""

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
        store = cast(_PublicStore, self)
        events: list[Event] = []
        position = 0
        while True:  # in global order, a page at a time, through the aggregate type index
            page = await store.load_events_from_position(
                position, _PAGE, aggregate_types=[aggregate_type]
            )
            events += [event for event in page if event.aggregate_version > version]
            if len(page) < _PAGE:
                break
            position = page[-1].global_position or position + len(page)
        events.sort(key=lambda event: event.timestamp)  # stable: ties stay in global order
        return events

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
        store = cast(_PublicStore, self)
        query = (
            f"SELECT COALESCE((SELECT min(global_position) FROM {store.schema}.events "
            "WHERE recorded_at >= $1) - 1, "
            f"(SELECT position FROM {store.schema}.global_sequence WHERE id = 1), 0)"
        )
        async with store.connection() as connection:
            return int(await connection.fetchval(query, moment))

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


_placeholders: dict[type[Any], type[Any]] = {}


def _placeholder_class(cls: type[Any]) -> type[Any]:
    if cls in _placeholders:
        return _placeholders[cls]

    def __init__(self: Any) -> None:
        pass

    def _ensure_initialized(self: Any) -> NoReturn:
        raise StoreNotInitializedError(_NOT_INITIALIZED)

    def create(placeholder: type[Any], *args: Any, **kwargs: Any) -> Any:
        # ``await EventStore().create(dsn)`` (upstream's two steps) opens a real store.
        return cls.create(*args, **kwargs)

    def __getattr__(self: Any, name: str) -> NoReturn:
        # The state a created store sets on itself (``_pool``, ``_closed``, ...) is missing here;
        # other names are simply not part of EventStore.
        if name.startswith("_") and not name.startswith("__"):
            raise StoreNotInitializedError(_NOT_INITIALIZED)
        raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

    _placeholders[cls] = type(
        f"Uninitialized{cls.__name__}",
        (cls,),
        {
            "__init__": __init__,
            "__getattr__": __getattr__,
            "_ensure_initialized": _ensure_initialized,
            "create": classmethod(create),
            "_initialized": False,
            "__doc__": "An EventStore() made without create(): every use raises.",
        },
    )
    return _placeholders[cls]
