"""One translation of driver failures into the library's error tree.

Categories, in the order they are told apart:

* the server cancelled the statement (``statement_timeout``, ``pg_cancel_backend``):
  :class:`StatementCancelledError`, nothing committed;
* a connection limit: :class:`ConnectionLimitError`;
* the connection is gone (network, server shutdown, terminated backend, a closed connection):
  :class:`DatabaseUnavailableError`; for a write, whether it committed is unknown;
* a missing privilege: :class:`PermissionDeniedError`;
* a value PostgreSQL cannot store (bad text, out of range, too large for an index):
  :class:`InvalidInputError`;
* anything else the server refused: :class:`StatementRefusedError`.

The driver's exception is kept as ``__cause__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from .._dsn import describe_dsn
from ..errors import (
    ConnectionLimitError,
    DatabaseUnavailableError,
    EventualiError,
    InvalidInputError,
    StatementCancelledError,
    StatementRefusedError,
)
from .denials import describe_denial

_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    # A pooled connection that has read the server's shutdown error but not yet the end of its
    # socket is not closed yet; the next query on it fails with "cannot switch to state ...;
    # another operation (2) is in progress" before anything is sent.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
)

_BAD_VALUE = (
    asyncpg.DataError,
    asyncpg.ProgramLimitExceededError,
)


# What PgBouncer in transaction mode does to asyncpg's named prepared statements.
_PREPARED_STATEMENT_LOST = (
    asyncpg.InvalidSQLStatementNameError,
    asyncpg.DuplicatePreparedStatementError,
)

#: The driver's base class of errors the server reported (for ``except`` clauses outside here).
ServerError = asyncpg.PostgresError


def unique_violation(exc: BaseException) -> str | None:
    """The constraint a unique violation hit, None when ``exc`` is none."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return str(exc.constraint_name or "")
    return None


def missing_partition(exc: BaseException | None) -> bool:
    """True when ``exc`` is a row that no partition of a partitioned table accepts."""
    return isinstance(exc, asyncpg.CheckViolationError) and "no partition of relation" in str(
        exc
    )


def server_detail(exc: BaseException) -> str:
    """The server's DETAIL line of ``exc`` ("" when there is none)."""
    return str(getattr(exc, "detail", "") or "")


def is_lost_connection(exc: BaseException) -> bool:
    """True when ``exc`` means the connection (or the server) went away, as opposed to a
    statement the server refused or cancelled."""
    if isinstance(exc, asyncpg.QueryCanceledError):
        return False
    return isinstance(exc, (*_LOST, DatabaseUnavailableError)) and not isinstance(
        exc, ConnectionLimitError
    )


def translate(exc: BaseException, dsn: str, *, writing: bool = False) -> EventualiError | None:
    """The library error for driver failure ``exc`` (None when ``exc`` is not one).

    ``writing`` says a write was in flight: a lost connection then leaves its outcome unknown.
    """
    if isinstance(exc, EventualiError):
        return exc
    target = describe_dsn(dsn)
    reason = str(exc).strip() or type(exc).__name__
    if isinstance(exc, asyncpg.QueryCanceledError):
        return StatementCancelledError(
            f"PostgreSQL at {target} cancelled the statement ({reason}); nothing it would have "
            "written was committed. Raise statement_timeout/lock_timeout for this role, or "
            "retry"
        )
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return ConnectionLimitError(
            f"PostgreSQL at {target} refused a new connection: {reason}. A connection limit "
            "was reached (the server's max_connections, or the role's or database's CONNECTION "
            "LIMIT): lower pool_max_size, close idle clients, or raise the limit"
        )
    if isinstance(exc, _LOST):
        if writing:
            return DatabaseUnavailableError(
                f"lost the connection to PostgreSQL at {target} while saving ({reason}); the "
                "save may or may not have been committed: reload the aggregate to see, then "
                "retry if needed"
            )
        return DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {target}: {reason}. Check that the server is running "
            "and accepts connections there, and that the DSN's user, password and database "
            "are right"
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return describe_denial(
            reason, dsn, writing=writing, hint=str(getattr(exc, "hint", "") or "")
        )
    if isinstance(exc, _BAD_VALUE):
        return InvalidInputError(
            f"PostgreSQL refused a value: {reason}. Nothing was written; fix the value "
            "(ids, types and text must be valid UTF-8 without NUL characters, numbers in range)"
        )
    if isinstance(exc, _PREPARED_STATEMENT_LOST):
        return StatementRefusedError(
            f"a prepared statement was lost at {target} ({str(exc).splitlines()[0]}): a "
            "connection pooler in transaction mode (PgBouncer before 1.21, or with "
            "max_prepared_statements = 0) stands in between. Pass statement_cache_size=0 to "
            "EventStore.create, or enable max_prepared_statements in PgBouncer >= 1.21"
        )
    if isinstance(exc, asyncpg.PostgresError):
        return StatementRefusedError(f"PostgreSQL at {target} refused a statement: {reason}")
    return None


@contextlib.contextmanager
def database_errors(dsn: str, *, writing: bool = False) -> Iterator[None]:
    """Raise driver failures inside the block as library errors (see :func:`translate`)."""
    try:
        yield
    except EventualiError:
        raise
    except Exception as exc:
        translated = translate(exc, dsn, writing=writing)
        if translated is None:
            raise
        raise translated from exc


@contextlib.contextmanager
def privilege_errors(dsn: str, *, writing: bool = True) -> Iterator[None]:
    """Raise a privilege the server refused inside the block as :class:`PermissionDeniedError`
    (naming the privilege and the grant to run); every other error passes unchanged."""
    try:
        yield
    except asyncpg.InsufficientPrivilegeError as exc:
        translated = translate(exc, dsn, writing=writing)
        assert translated is not None
        raise translated from exc


def refused_privilege(exc: BaseException) -> BaseException | None:
    """The driver's refused-privilege error inside ``exc`` (its cause chain, or a SQLAlchemy
    error's ``orig``), None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.InsufficientPrivilegeError):
            found: BaseException = current
            return found
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None
