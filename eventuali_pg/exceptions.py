"""``eventuali.exceptions`` under eventuali-pg: upstream's exception names in eventuali-pg's
error tree (:mod:`eventuali_pg.errors`), so ``except`` clauses written with either name catch
the same errors.

=============================  ================================================================
upstream name                  in eventuali-pg
=============================  ================================================================
``EventualiError``             the root of every library error
``OptimisticConcurrencyError`` the same class as :class:`~eventuali_pg.errors.ConcurrencyError`
``EventStoreError``            base of ``DatabaseError``, ``SchemaNotReadyError``,
                               ``StoreClosedError``, ``AggregateNotFoundError``
``DatabaseError``              base of ``DatabaseUnavailableError`` and
                               ``UnsupportedDatabaseError`` (a ``sqlite://`` URL)
``SerializationError``         a payload that cannot be stored as JSON (an ``InvalidEventError``)
``InvalidEventError``          base of ``SerializationError``, ``PayloadTooLargeError``,
                               ``EventTypeConflictError`` (an ``InvalidInputError``)
``AggregateNotFoundError``     same constructor; ``EventStore.load`` returns None, as upstream
``ConfigurationError``         a bad setting or option (also a ``ValueError``)
``ProjectionError``            base of ``CheckpointError``
``SnapshotError``              never raised (no snapshot store)
``StreamingError``             base of ``SubscriptionError`` and its subclasses
=============================  ================================================================
"""

from .errors import (
    AggregateNotFoundError,
    ConfigurationError,
    DatabaseError,
    EventStoreError,
    EventualiError,
    InvalidEventError,
    OptimisticConcurrencyError,
    ProjectionError,
    SerializationError,
    SnapshotError,
    StreamingError,
)

__all__ = [
    "AggregateNotFoundError",
    "ConfigurationError",
    "DatabaseError",
    "EventStoreError",
    "EventualiError",
    "InvalidEventError",
    "OptimisticConcurrencyError",
    "ProjectionError",
    "SerializationError",
    "SnapshotError",
    "StreamingError",
]
