"""eventuali-pg: an asyncio event store on PostgreSQL with dense global order and live streaming."""

from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    ConcurrencyError,
    ConfigurationError,
    ConnectionLimitError,
    DatabaseUnavailableError,
    DecodeError,
    DuplicateSubscriptionError,
    EventTypeConflictError,
    EventualiError,
    InvalidInputError,
    MissingHandlerError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ReceiverBusyError,
    RetryMismatchError,
    SchemaNotReadyError,
    SerializationError,
    StatementCancelledError,
    StatementRefusedError,
    StoreClosedError,
    SubscriptionClosed,
    SubscriptionError,
    SubscriptionLagged,
    UnknownSubscriptionError,
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
from .store.options import StoreOptions
from .store.transaction import IsolationError, StoreTransaction
from .stream import (
    EventStreamer,
    EventStreamReceiver,
    FeedStats,
    ReceiverState,
    ReceiverStats,
    StreamerStats,
    StreamEvent,
    Subscription,
    SubscriptionBuilder,
)

__all__ = [
    "Aggregate",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ConcurrencyError",
    "ConfigurationError",
    "ConnectionLimitError",
    "ConsumerGroup",
    "DatabaseUnavailableError",
    "DeadLetter",
    "DeadLetterQueue",
    "DecodeError",
    "DuplicateSubscriptionError",
    "Event",
    "EventStore",
    "EventStreamReceiver",
    "EventStreamer",
    "EventTypeConflictError",
    "EventualiError",
    "FeedStats",
    "InvalidInputError",
    "IsolationError",
    "MissingHandlerError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Projection",
    "ProjectionRunner",
    "ProjectionStats",
    "ReceiverBusyError",
    "ReceiverState",
    "ReceiverStats",
    "RetryMismatchError",
    "SchemaNotReadyError",
    "SerializationError",
    "StatementCancelledError",
    "StatementRefusedError",
    "StoreClosedError",
    "StoreOptions",
    "StoreTransaction",
    "StreamEvent",
    "StreamerStats",
    "Subscription",
    "SubscriptionBuilder",
    "SubscriptionClosed",
    "SubscriptionError",
    "SubscriptionLagged",
    "TransactionalProjection",
    "UnknownSubscriptionError",
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
    raise AttributeError(f"module 'eventuali_pg' has no attribute {name!r}")
