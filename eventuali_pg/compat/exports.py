"""The names upstream eventuali exports from its package that eventuali-pg adds, re-exported by
``eventuali_pg/__init__.py`` (kept apart so the package's own export list stays as it is)."""

from ..errors import (
    AggregateNotFoundError,
    DatabaseError,
    EventStoreError,
    InvalidEventError,
    OptimisticConcurrencyError,
    ProjectionError,
    SnapshotError,
    StoreNotInitializedError,
    StreamingError,
    UnsupportedDatabaseError,
    UnsupportedFeatureError,
)
from .streaming import SagaHandler

__all__ = [
    "AggregateNotFoundError",
    "DatabaseError",
    "EventStoreError",
    "InvalidEventError",
    "OptimisticConcurrencyError",
    "ProjectionError",
    "SagaHandler",
    "SnapshotError",
    "StoreNotInitializedError",
    "StreamingError",
    "UnsupportedDatabaseError",
    "UnsupportedFeatureError",
]
