"""eventuali-pg: an asyncio event store on PostgreSQL with dense global order and live streaming."""

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
from .migration import current_revision, downgrade, migrate
from .models import Aggregate, Event, event_class_for, registered_event_types
from .store.event_store import EventStore

__all__ = [
    "Aggregate",
    "CheckpointError",
    "ConcurrencyError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "DuplicateSubscriptionError",
    "Event",
    "EventStore",
    "EventTypeConflictError",
    "EventualiError",
    "InvalidInputError",
    "MissingHandlerError",
    "PayloadTooLargeError",
    "SchemaNotReadyError",
    "SerializationError",
    "StoreClosedError",
    "SubscriptionClosed",
    "SubscriptionError",
    "SubscriptionLagged",
    "UnknownSubscriptionError",
    "current_revision",
    "downgrade",
    "event_class_for",
    "migrate",
    "registered_event_types",
]
