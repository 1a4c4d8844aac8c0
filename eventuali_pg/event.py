"""``eventuali.event`` under eventuali-pg: :class:`Event` and upstream's example event types.

``Event`` is :class:`eventuali_pg.models.Event`. ``DomainEvent``, ``SystemEvent``,
``UserRegistered``, ``UserEmailChanged`` and ``UserDeactivated`` are the example domain of
:mod:`eventuali_pg.examples_domain`, created on first access so they never clash with an
application's own classes of the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import Event

if TYPE_CHECKING:
    from .examples_domain import (
        DomainEvent,
        SystemEvent,
        UserDeactivated,
        UserEmailChanged,
        UserRegistered,
    )

_EXAMPLES = frozenset(
    {"DomainEvent", "SystemEvent", "UserRegistered", "UserEmailChanged", "UserDeactivated"}
)

__all__ = [
    "DomainEvent",
    "Event",
    "SystemEvent",
    "UserDeactivated",
    "UserEmailChanged",
    "UserRegistered",
]


def __getattr__(name: str) -> Any:
    if name in _EXAMPLES:
        from . import examples_domain

        return getattr(examples_domain, name)
    raise AttributeError(f"module 'eventuali_pg.event' has no attribute {name!r}")
