"""Connections for the projection modules, and telling the database's failures from the
handler's: by where they were raised, never by their type."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

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


@contextlib.asynccontextmanager
async def using(store: EventStore, connection: Any) -> AsyncIterator[Any]:
    """``connection`` when the caller passed one (its transaction), else one borrowed from
    ``store`` for the block."""
    if connection is not None:
        yield connection
    else:
        async with store.connection() as conn:
            yield conn
