"""The one error tree of eventuali-pg.

Every error the library raises derives from :class:`EventualiError`. Some also derive from a
builtin (``ValueError``, ``LookupError``, ``ConnectionError``) so callers can catch them the way
they would catch the builtin. Messages say what was wrong and what to do about it.
"""

from __future__ import annotations


class EventualiError(Exception):
    """Base class of every error raised by eventuali-pg."""


class ConfigurationError(EventualiError, ValueError):
    """A setting is missing or invalid (DSN, schema name, channel, unknown option)."""


class InvalidInputError(EventualiError, ValueError):
    """An argument was rejected before anything was written."""


class SerializationError(InvalidInputError):
    """An event payload or metadata value cannot be encoded as JSON."""


class PayloadTooLargeError(InvalidInputError):
    """An encoded event is larger than the store's ``max_payload_bytes``."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class EventTypeConflictError(EventualiError, TypeError):
    """Two different event classes claim the same event type name."""


class MissingHandlerError(EventualiError, AttributeError):
    """An aggregate has no ``apply_<event_type>`` method for an event it was given."""


class ConcurrencyError(EventualiError):
    """Another writer appended to the aggregate first; nothing was written.

    The aggregate keeps its uncommitted events: reload it, re-run the command, save again.
    """

    def __init__(
        self, message: str, *, aggregate_id: str, expected_version: int, actual_version: int
    ) -> None:
        super().__init__(message)
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class DatabaseUnavailableError(EventualiError, ConnectionError):
    """The PostgreSQL server could not be reached or refused the connection."""


class SchemaNotReadyError(EventualiError):
    """The event store schema is missing or older than this version of the library."""


class StoreClosedError(EventualiError):
    """The store was used after ``close()``."""


class SubscriptionError(EventualiError):
    """Base class of subscription and receiver errors."""


class DuplicateSubscriptionError(SubscriptionError, ValueError):
    """A subscription with this id is already active on the streamer."""


class UnknownSubscriptionError(SubscriptionError, LookupError):
    """No active subscription has this id."""


class SubscriptionClosed(SubscriptionError):
    """The receiver has ended (unsubscribed, closed, or its store closed)."""


class SubscriptionLagged(SubscriptionError):
    """A receiver with no store to catch up from fell behind and missed events."""

    def __init__(self, message: str, *, missed: int, last_position: int) -> None:
        super().__init__(message)
        self.missed = missed
        self.last_position = last_position


class CheckpointError(EventualiError):
    """A checkpoint would move backwards without an explicit reset."""


class ConnectionLimitError(DatabaseUnavailableError):
    """The server refused a new connection: a connection limit (the server's ``max_connections``
    or the role's ``CONNECTION LIMIT``) was reached."""


class PermissionDeniedError(EventualiError, PermissionError):
    """The database role lacks a privilege the operation needs."""


class StatementCancelledError(EventualiError):
    """The server cancelled a statement (``statement_timeout``, ``lock_timeout`` or
    ``pg_cancel_backend``); nothing it would have written was committed."""


class StatementRefusedError(EventualiError):
    """PostgreSQL refused a statement for a reason none of the other errors names."""


class DecodeError(EventualiError):
    """A stored event cannot be turned back into its event class (its payload no longer
    validates, or an upcaster failed). Permanent: reading it again gives the same result."""

    def __init__(
        self,
        message: str,
        *,
        event_type: str,
        event_version: int,
        global_position: int | None,
        aggregate_id: str,
    ) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.event_version = event_version
        self.global_position = global_position
        self.aggregate_id = aggregate_id


class ReceiverBusyError(SubscriptionError, RuntimeError):
    """A second task tried to take events from a receiver another task is waiting on."""


class RetryMismatchError(EventualiError):
    """A save was retried, but its events are only partly stored, or stored at other positions
    in their aggregates' history, so it is neither new nor a repeat of an earlier save."""
class AggregateTypeMismatchError(EventualiError, LookupError):
    """``store.load(cls, id)`` found events of ``id``, but of another aggregate type than
    ``cls``'s (an id of one kind of aggregate used where another was meant)."""

    def __init__(self, message: str, *, aggregate_id: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class PositionBeyondHeadError(InvalidInputError):
    """A subscription was asked to start after a global position no event has reached yet."""

    def __init__(self, message: str, *, position: int, head: int) -> None:
        super().__init__(message)
        self.position = position
        self.head = head


class StreamerClosedError(SubscriptionError):
    """``subscribe`` was called on an :class:`EventStreamer` after its ``close()``."""
