"""eventuali-pg: an asyncio event store on PostgreSQL with dense global order and live streaming."""

from typing import TYPE_CHECKING, Any

from .context import EventContext, current_event_context, event_context
from .errors import (
    AggregateTypeMismatchError,
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
    PositionBeyondHeadError,
    ReceiverBusyError,
    RetryMismatchError,
    SchemaNotReadyError,
    SerializationError,
    SessionUnavailableError,
    StatementCancelledError,
    StatementRefusedError,
    StoreClosedError,
    StreamerClosedError,
    SubjectForgottenError,
    SubscriptionClosed,
    SubscriptionError,
    SubscriptionLagged,
    UnknownSubscriptionError,
    UpcasterError,
)
from .models import Aggregate, Event, event_class_for, registered_event_types
from .personal import ERASED, Personal
from .projections import (
    Checkpoint,
    CheckpointStore,
    ConsumerGroup,
    DeadLetter,
    DeadLetterQueue,
    ElasticGroup,
    Projection,
    ProjectionRunner,
    ProjectionStats,
    TransactionalProjection,
    member_for,
    wait_for_checkpoint,
)
from .records import event_to_json, event_to_record
from .store.event_store import EventStore
from .store.forget import SubjectForgotten
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
from .upcasting import check_upcasters, upcaster

__all__ = [
    "ERASED",
    "Aggregate",
    "AggregateTypeMismatchError",
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
    "ElasticGroup",
    "Event",
    "EventContext",
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
    "Personal",
    "PositionBeyondHeadError",
    "Projection",
    "ProjectionRunner",
    "ProjectionStats",
    "ReceiverBusyError",
    "ReceiverState",
    "ReceiverStats",
    "RetryMismatchError",
    "SchemaNotReadyError",
    "SerializationError",
    "SessionUnavailableError",
    "StatementCancelledError",
    "StatementRefusedError",
    "StoreClosedError",
    "StoreOptions",
    "StoreTransaction",
    "StreamEvent",
    "StreamerClosedError",
    "StreamerStats",
    "SubjectForgotten",
    "SubjectForgottenError",
    "Subscription",
    "SubscriptionBuilder",
    "SubscriptionClosed",
    "SubscriptionError",
    "SubscriptionLagged",
    "TransactionalProjection",
    "UnknownSubscriptionError",
    "UpcasterError",
    "check_upcasters",
    "current_event_context",
    "current_revision",
    "downgrade",
    "event_class_for",
    "event_context",
    "event_to_json",
    "event_to_record",
    "member_for",
    "migrate",
    "registered_event_types",
    "upcaster",
    "wait_for_checkpoint",
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
