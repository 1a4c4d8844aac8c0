"""eventuali-pg: an asyncio event store on PostgreSQL with dense global order and live streaming."""

from typing import TYPE_CHECKING, Any

from .compat.streaming import SagaHandler
from .errors import (
    AggregateNotFoundError,
    CheckpointError,
    ConcurrencyError,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    DuplicateSubscriptionError,
    EventStoreError,
    EventTypeConflictError,
    EventualiError,
    InvalidEventError,
    InvalidInputError,
    MissingHandlerError,
    OptimisticConcurrencyError,
    PayloadTooLargeError,
    ProjectionError,
    SchemaNotReadyError,
    SerializationError,
    SnapshotError,
    StoreClosedError,
    StoreNotInitializedError,
    StreamingError,
    SubscriptionClosed,
    SubscriptionError,
    SubscriptionLagged,
    UnknownSubscriptionError,
    UnsupportedDatabaseError,
    UnsupportedFeatureError,
)
from .models import Aggregate, Event, event_class_for, registered_event_types
from .projections import (
    Checkpoint,
    CheckpointStore,
    ConsumerGroup,
    DeadLetter,
    DeadLetterQueue,
    Projection,
    ProjectionRunner,
    ProjectionStats,
    TransactionalProjection,
    member_for,
)
from .store.event_store import EventStore
from .stream import (
    EventStreamer,
    EventStreamReceiver,
    FeedStats,
    ReceiverStats,
    StreamerStats,
    StreamEvent,
    Subscription,
    SubscriptionBuilder,
)

__all__ = [
    "Aggregate",
    "AggregateNotFoundError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ConcurrencyError",
    "ConfigurationError",
    "ConsumerGroup",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DeadLetter",
    "DeadLetterQueue",
    "DuplicateSubscriptionError",
    "Event",
    "EventStore",
    "EventStoreError",
    "EventStreamReceiver",
    "EventStreamer",
    "EventTypeConflictError",
    "EventualiError",
    "FeedStats",
    "InvalidEventError",
    "InvalidInputError",
    "MissingHandlerError",
    "OptimisticConcurrencyError",
    "PayloadTooLargeError",
    "Projection",
    "ProjectionError",
    "ProjectionRunner",
    "ProjectionStats",
    "ReceiverStats",
    "SagaHandler",
    "SchemaNotReadyError",
    "SerializationError",
    "SnapshotError",
    "StoreClosedError",
    "StoreNotInitializedError",
    "StreamEvent",
    "StreamerStats",
    "StreamingError",
    "Subscription",
    "SubscriptionBuilder",
    "SubscriptionClosed",
    "SubscriptionError",
    "SubscriptionLagged",
    "TransactionalProjection",
    "UnknownSubscriptionError",
    "UnsupportedDatabaseError",
    "UnsupportedFeatureError",
    "current_revision",
    "downgrade",
    "event_class_for",
    "member_for",
    "migrate",
    "registered_event_types",
]

if TYPE_CHECKING:
    from .migration import current_revision, downgrade, migrate

_LAZY = {"current_revision", "downgrade", "migrate"}


def __getattr__(name: str) -> Any:
    # alembic and SQLAlchemy take a third of a second to import; only migrating needs them.
    if name in _LAZY:
        from . import migration

        return getattr(migration, name)
    from .compat.unsupported import TOP_LEVEL_AREAS, UNSUPPORTED_NAMES, unsupported

    if UNSUPPORTED_NAMES.get(name) in TOP_LEVEL_AREAS:
        raise unsupported(name, "eventuali_pg")
    raise AttributeError(f"module 'eventuali_pg' has no attribute {name!r}")
