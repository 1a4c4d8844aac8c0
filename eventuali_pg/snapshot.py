"""``eventuali.snapshot`` under eventuali-pg: upstream's snapshot service is not provided.

Snapshots are a class setting here (``class User(Aggregate, snapshot_every=50)``). Importing
``SnapshotService``, ``SnapshotConfig`` or ``AggregateSnapshot`` from here raises
:class:`~eventuali_pg.errors.UnsupportedFeatureError` saying so.
"""

from typing import Any

from .compat.unsupported import module_getattr

__all__: list[str] = []

_getattr = module_getattr("eventuali_pg.snapshot", frozenset({"snapshot"}))


def __getattr__(name: str) -> Any:
    return _getattr(name)
