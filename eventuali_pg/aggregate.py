"""``eventuali.aggregate`` under eventuali-pg: :class:`Aggregate` and upstream's example ``User``.

``Aggregate`` is :class:`eventuali_pg.models.Aggregate`; ``User`` is the example aggregate of
:mod:`eventuali_pg.examples_domain`, created on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import Aggregate, Event

if TYPE_CHECKING:
    from .examples_domain import User

__all__ = ["Aggregate", "Event", "User"]


def __getattr__(name: str) -> Any:
    if name == "User":
        from . import examples_domain

        return examples_domain.User
    raise AttributeError(f"module 'eventuali_pg.aggregate' has no attribute {name!r}")
