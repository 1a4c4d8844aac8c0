"""``eventuali.snapshot`` under eventuali-pg: not provided.

Importing ``SnapshotService``, ``SnapshotConfig`` or ``AggregateSnapshot`` from here raises
:class:`~eventuali_pg.errors.UnsupportedFeatureError` saying what to do instead.
"""

from typing import Any

from .compat.unsupported import module_getattr

__all__: list[str] = []

_getattr = module_getattr("eventuali_pg.snapshot", frozenset({"snapshot"}))


def __getattr__(name: str) -> Any:
    return _getattr(name)
