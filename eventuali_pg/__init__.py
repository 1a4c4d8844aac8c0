"""eventuali-pg: an asyncio event store on PostgreSQL with dense global order and live streaming."""

from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    ConcurrencyError,
    ConfigurationError,
    DatabaseUnavailableError,
    DuplicateSubscriptionError,
    EventTypeConflictError,
    EventualiError,
    InvalidInputError,
    MissingHandlerError,
    PayloadTooLargeError,
    SchemaNotReadyError,
    SerializationError,
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
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "ConcurrencyError",
    "ConfigurationError",
    "ConsumerGroup",
    "DatabaseUnavailableError",
    "DeadLetter",
    "DeadLetterQueue",
    "DuplicateSubscriptionError",
    "Event",
    "EventStore",
    "EventStreamReceiver",
    "EventStreamer",
    "EventTypeConflictError",
    "EventualiError",
    "FeedStats",
    "InvalidInputError",
    "MissingHandlerError",
    "PayloadTooLargeError",
    "Projection",
    "ProjectionRunner",
    "ProjectionStats",
    "ReceiverStats",
    "SchemaNotReadyError",
    "SerializationError",
    "StoreClosedError",
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

# Upstream eventuali's names that eventuali-pg adds (see "Coming from eventuali" in the README).
from .compat.exports import *  # noqa: E402, F403
from .compat.exports import __all__ as _upstream_names  # noqa: E402

__all__ += _upstream_names


def __getattr__(name: str) -> Any:
    # alembic and SQLAlchemy take a third of a second to import; only migrating needs them.
    if name in _LAZY:
        from . import migration

        return getattr(migration, name)
    from .compat.unsupported import TOP_LEVEL_AREAS, UNSUPPORTED_NAMES, unsupported

    if UNSUPPORTED_NAMES.get(name) in TOP_LEVEL_AREAS:
        raise unsupported(name, "eventuali_pg")
    raise AttributeError(f"module 'eventuali_pg' has no attribute {name!r}")
