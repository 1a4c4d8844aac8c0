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


class InvalidEventError(InvalidInputError):
    """An event is invalid or malformed (upstream eventuali's name; also an InvalidInputError).

    Raised for a naive timestamp that cannot be interpreted, an empty or clashing event type,
    and as the base of :class:`SerializationError` and :class:`PayloadTooLargeError`.
    """


class SerializationError(InvalidEventError):
    """An event payload or metadata value cannot be encoded as JSON."""


class PayloadTooLargeError(InvalidEventError):
    """An encoded event is larger than the store's ``max_payload_bytes``."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class EventTypeConflictError(InvalidEventError, TypeError):
    """Two different event classes claim the same event type name."""


class MissingHandlerError(EventualiError, AttributeError, NotImplementedError):
    """An aggregate has no ``apply_<event_type>`` method for an event it was given.

    Also a ``NotImplementedError``, which is what upstream eventuali raises in this case.
    """


class ConcurrencyError(EventualiError):
    """Another writer appended to the aggregate first; nothing was written.

    The aggregate keeps its uncommitted events: reload it, re-run the command, save again.
    """

    def __init__(
        self,
        message: str,
        expected_version: int | None = None,
        actual_version: int | None = None,
        *,
        aggregate_id: str | None = None,
    ) -> None:
        # Positional versions and optional fields keep upstream eventuali's constructor
        # (``OptimisticConcurrencyError(message, expected_version, actual_version)``) working.
        super().__init__(message)
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        self.actual_version = actual_version


#: Upstream eventuali's name for :class:`ConcurrencyError` (the same class).
OptimisticConcurrencyError = ConcurrencyError


class EventStoreError(EventualiError):
    """An error of the event store itself (upstream eventuali's name).

    Base of :class:`DatabaseError`, :class:`SchemaNotReadyError`, :class:`StoreClosedError`
    and :class:`AggregateNotFoundError`.
    """


class DatabaseError(EventStoreError):
    """A database-related error (upstream eventuali's name); base of
    :class:`DatabaseUnavailableError` and :class:`UnsupportedDatabaseError`."""


class DatabaseUnavailableError(DatabaseError, ConnectionError):
    """The PostgreSQL server could not be reached or refused the connection."""


class UnsupportedDatabaseError(DatabaseError, ConfigurationError):
    """The database URL names another database than PostgreSQL (``sqlite://``, a ``.db`` file).

    eventuali-pg stores events in PostgreSQL only; the message says how to get a server.
    """


class SessionUnavailableError(DatabaseError, ConfigurationError):
    """Something that needs a server session of its own (LISTEN, a session advisory lock) was
    asked of a DSN that goes through a connection pooler (PgBouncer), where it would silently
    not work: pass ``listen_dsn=`` (a direct or session-mode URL), or use ``notify=False``."""


class SchemaNotReadyError(EventStoreError):
    """The event store schema is missing or older than this version of the library."""


class StoreClosedError(EventStoreError):
    """The store was used after ``close()``."""


class StoreNotInitializedError(EventStoreError, RuntimeError):
    """An ``EventStore()`` made without :meth:`EventStore.create` was used (upstream eventuali's
    two-step construction). A ``RuntimeError``, as upstream raises."""


class AggregateNotFoundError(EventStoreError, LookupError):
    """An aggregate has no events (upstream eventuali's name and signature).

    ``EventStore.load`` returns None for a missing aggregate, as upstream's does; raise this
    from application code that needs the aggregate to exist.
    """

    def __init__(self, aggregate_id: str, aggregate_type: str | None = None) -> None:
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        message = f"Aggregate '{aggregate_id}' not found"
        if aggregate_type:
            message += f" (type: {aggregate_type})"
        super().__init__(message)


class StreamingError(EventualiError):
    """An error of event streaming (upstream eventuali's name); base of
    :class:`SubscriptionError`."""


class SubscriptionError(StreamingError):
    """Base class of subscription and receiver errors."""


class DuplicateSubscriptionError(SubscriptionError, ValueError):
    """A subscription with this id is already active on the streamer."""


class UnknownSubscriptionError(SubscriptionError, LookupError):
    """No active subscription has this id."""


class SubscriptionClosed(SubscriptionError, RuntimeError):
    """The receiver has ended (unsubscribed, closed, or its store closed).

    Also a ``RuntimeError``, which upstream eventuali's ``recv()`` raises in this case.
    """


class SubscriptionLagged(SubscriptionError):
    """A receiver with no store to catch up from fell behind and missed events."""

    def __init__(self, message: str, *, missed: int, last_position: int) -> None:
        super().__init__(message)
        self.missed = missed
        self.last_position = last_position


class ProjectionError(EventualiError):
    """An error of a projection (upstream eventuali's name); base of :class:`CheckpointError`."""


class SnapshotError(EventualiError):
    """An error with snapshots (upstream eventuali's name). eventuali-pg's snapshots never fail
    a save or a load (a snapshot that cannot be written or read is skipped), so the library
    never raises it; it exists so ``except SnapshotError`` keeps working."""


class UnsupportedFeatureError(EventualiError, ImportError):
    """An upstream eventuali name eventuali-pg deliberately does not provide (its security,
    tenancy, observability, snapshot and SQLite-tuning extensions). An ``ImportError``, so a
    ``from eventuali_pg import Name`` fails where it is written, with a message saying what to
    use instead."""


class CheckpointError(ProjectionError):
    """A checkpoint would move backwards without an explicit reset."""


class ConnectionLimitError(DatabaseUnavailableError):
    """The server refused a new connection: a connection limit (the server's ``max_connections``
    or the role's ``CONNECTION LIMIT``) was reached."""


class PermissionDeniedError(EventualiError, PermissionError):
    """The database role lacks a privilege the operation needs.

    When PostgreSQL named the object, ``object_type`` (``"table"``, ``"schema"``, ...),
    ``object_name`` and ``privileges`` (what the operation needs on it, e.g. ``("INSERT",)``)
    say which; ``role`` is the role connected. The message names them and the grant to run.
    """

    def __init__(
        self,
        message: str,
        *,
        role: str | None = None,
        privileges: tuple[str, ...] = (),
        object_type: str | None = None,
        object_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.role = role
        self.privileges = privileges
        self.object_type = object_type
        self.object_name = object_name


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


class UpcasterError(ConfigurationError):
    """The upcasters and event classes do not form complete chains (a gap, a duplicate, an
    upcaster for a type no class handles)."""


class SubjectForgottenError(EventualiError):
    """A save carries personal data of a subject whose key :meth:`EventStore.forget` destroyed.

    Nothing of the save was written. Personal data of a forgotten subject can be written again
    only under a new key, asked for explicitly with :meth:`EventStore.new_subject_key`.
    """

    def __init__(self, message: str, *, subject_id: str) -> None:
        super().__init__(message)
        self.subject_id = subject_id
