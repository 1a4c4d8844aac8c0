"""Connections for the projection modules, and telling the database's failures from the
handler's: by where they were raised, never by their type."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._db import close_or_terminate, privilege_errors
from ..errors import CheckpointError, StoreClosedError

if TYPE_CHECKING:
    from ..store.event_store import EventStore


class DatabaseFailure(Exception):
    """The runner's own database work failed (borrowing or opening a connection, a transaction,
    a checkpoint or dead-letter write), or the exactly-once connection died under the handler:
    the session ends and resumes from the stored checkpoint. ``cause`` is what was raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class HandlerFailure(Exception):
    """The projection's handler raised ``cause`` (whatever its type): retried, then parked."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


@contextlib.asynccontextmanager
async def database_step() -> AsyncIterator[None]:
    """Whatever the block raises becomes a :class:`DatabaseFailure`, except a
    :class:`HandlerFailure` (the handler's, raised through it), a :class:`CheckpointError` (the
    fence: another consumer moved the checkpoint) and cancellation."""
    try:
        yield
    except (HandlerFailure, DatabaseFailure, CheckpointError):
        raise
    except Exception as exc:
        raise DatabaseFailure(exc) from exc


def cancelling() -> bool:
    """True when the current task itself is being cancelled (not merely an awaited one)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def open_connection(store: EventStore) -> Any:
    """A connection of its own to ``store``'s database, outside the store's pool.

    Whatever holds a transaction while code it does not control runs in it (a handler, a
    projection's ``reset``) uses one of these: that code may borrow from the pool itself, and a
    pooled connection held while waiting for another deadlocks a small or busy pool.
    """
    if store.closed:
        raise StoreClosedError("the event store is closed; create a new one to go on")
    return await store.connector.session()


async def close_connection(connection: Any) -> None:
    """Close a connection from :func:`open_connection` (abort it if that fails or is
    cancelled)."""
    if connection is None:
        return
    try:
        await close_or_terminate(connection, 2.0)
    finally:
        if not connection.is_closed():
            connection.terminate()


@contextlib.asynccontextmanager
async def own_connection(store: EventStore) -> AsyncIterator[Any]:
    """:func:`open_connection` for the block, closed when it ends."""
    connection = await open_connection(store)
    try:
        with privilege_errors(store.dsn):
            yield connection
    finally:
        await close_connection(connection)


@contextlib.asynccontextmanager
async def using(store: EventStore, connection: Any) -> AsyncIterator[Any]:
    """``connection`` when the caller passed one (its transaction), else one borrowed from
    ``store`` for the block."""
    # A refused privilege (a reader role moving a checkpoint) is named, with the grant to run.
    with privilege_errors(store.dsn):
        if connection is not None:
            yield connection
        else:
            async with store.connection() as conn:
                yield conn
