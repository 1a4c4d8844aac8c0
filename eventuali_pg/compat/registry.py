"""Explicit event class registrations (upstream eventuali's ``EventStore.register_event_class``)
on top of the automatic registration by class name in :mod:`eventuali_pg.models`."""

from __future__ import annotations

from .. import models
from ..errors import InvalidInputError
from ..models import Event

# Registrations made with register_event_class, and what each one shadowed in the automatic
# registry, restored by unregister_event_class.
_explicit: dict[str, type[Event]] = {}
_shadowed: dict[str, type[Event] | None] = {}


def register_event_class(event_type: str, event_class: type[Event]) -> None:
    """Load events stored under ``event_type`` as ``event_class`` (explicit registration).

    Takes precedence over the automatic registration by class name until
    :func:`unregister_event_class` restores what it shadowed.
    """
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInputError(f"event_type must be a non-empty string, got {event_type!r}")
    if not (isinstance(event_class, type) and issubclass(event_class, Event)):
        raise InvalidInputError(
            f"event_class must be a subclass of Event (eventuali_pg.Event), got {event_class!r}"
        )
    if event_type not in _explicit:
        _shadowed[event_type] = models._registry.get(event_type)
    _explicit[event_type] = event_class
    models._registry[event_type] = event_class


def unregister_event_class(event_type: str) -> None:
    """Undo :func:`register_event_class` for ``event_type`` (no error when not registered)."""
    if _explicit.pop(event_type, None) is None:
        return
    previous = _shadowed.pop(event_type, None)
    if previous is None:
        models._registry.pop(event_type, None)
    else:
        models._registry[event_type] = previous


def registered_event_classes() -> dict[str, type[Event]]:
    """A copy of the explicit registrations made with :func:`register_event_class`."""
    return dict(_explicit)
