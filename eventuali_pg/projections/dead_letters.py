"""The dead-letter table: events a projection could not handle, kept with their error.

A runner parks an event after its last failed attempt and goes on with the next one, so a
poison event never stops a projection and is never dropped silently. Parked events stay until
they are retried successfully (:meth:`DeadLetterQueue.retry`) or discarded on purpose.
"""

from __future__ import annotations

import json
import logging
import re
import traceback as tb
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..codec.personal import erase_copy
from ..errors import InvalidInputError
from ..models import Event
from ..store.validation import check_limit, check_position
from ._db import own_connection, using
from .checkpoints import check_subscription_id
from .projection import AnyProjection, TransactionalProjection
from .sql import ProjectionSql, projection_sql

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")


@dataclass(frozen=True)
class DeadLetter:
    """One parked event: which subscription gave up on it, the event, and the last error."""

    subscription_id: str
    global_position: int
    event_id: uuid.UUID
    aggregate_id: str
    aggregate_type: str
    event_type: str
    event: dict[str, Any]
    error: str
    traceback: str
    attempts: int
    parked_at: datetime
    last_failed_at: datetime

    async def load_event(self, store: EventStore) -> Event:
        """The parked event, read from the store (decoded as on every read path; ``event`` is
        only a copy made when it was parked, for people to read)."""
        stored = await store.load_events_from_position(self.global_position - 1, 1)
        if not stored or stored[0].global_position != self.global_position:
            raise InvalidInputError(
                f"position {self.global_position} holds no stored event; discard the letter"
            )
        return stored[0]


# PostgreSQL text holds neither NUL nor a UTF-16 surrogate (a str can hold both).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with every NUL character and lone surrogate replaced by U+FFFD, which
    PostgreSQL text can store (a handler's error message may contain anything)."""
    return _UNSTORABLE.sub("\ufffd", text)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(``"Type: message"``, formatted traceback) of an exception, storable as text."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails is still parked
        message = "<str() of the exception failed>"
    trace = "".join(tb.format_exception(exc))
    return storable_text(f"{type(exc).__qualname__}: {message}"), storable_text(trace)


class DeadLetterQueue:
    """Lists, retries and discards the parked events of one event store."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._sql: ProjectionSql = projection_sql(store.schema)

    async def park(
        self,
        subscription_id: str,
        event: Event,
        error: BaseException,
        attempts: int,
        *,
        connection: Any = None,
    ) -> None:
        """Park ``event`` for ``subscription_id`` with ``error`` after ``attempts`` attempts.

        Parking the same event again adds the attempts and keeps the newest error.
        """
        check_subscription_id(subscription_id)
        if event.global_position is None:
            raise InvalidInputError("only stored events (with a global_position) can be parked")
        message, trace = describe_error(error)
        async with using(self._store, connection) as conn:
            await conn.execute(
                self._sql.dead_letter_park,
                subscription_id,
                event.global_position,
                event.event_id,
                event.aggregate_id,
                event.aggregate_type,
                event.event_type,
                json.dumps(erase_copy(event, event.model_dump(mode="json"))),
                message,
                trace,
                attempts,
            )
        logger.error(
            "subscription %r parked event %d (%s of %s) after %d attempt(s): %s",
            subscription_id,
            event.global_position,
            event.event_type,
            event.aggregate_id,
            attempts,
            message,
        )

    async def list(
        self, subscription_id: str | None = None, *, limit: int | None = 1000
    ) -> list[DeadLetter]:
        """Parked events of ``subscription_id`` (of every subscription when None), sorted by
        subscription id then position, at most ``limit`` (None: all)."""
        if subscription_id is not None:
            check_subscription_id(subscription_id)
        check_limit(limit)
        async with using(self._store, None) as conn:
            rows = await conn.fetch(self._sql.dead_letter_list, subscription_id, limit)
        return [_dead_letter(row) for row in rows]

    async def get(self, subscription_id: str, position: int) -> DeadLetter | None:
        """The parked event at ``position`` of ``subscription_id``, None if there is none."""
        check_subscription_id(subscription_id)
        check_position(position)
        async with using(self._store, None) as conn:
            row = await conn.fetchrow(self._sql.dead_letter_get, subscription_id, position)
        return _dead_letter(row) if row is not None else None

    async def count(self, subscription_id: str) -> int:
        """How many events ``subscription_id`` has parked."""
        check_subscription_id(subscription_id)
        async with using(self._store, None) as conn:
            return int(await conn.fetchval(self._sql.dead_letter_count, subscription_id))

    async def discard(self, subscription_id: str, position: int) -> bool:
        """Delete a parked event without handling it; False when it was not parked."""
        check_subscription_id(subscription_id)
        check_position(position)
        async with using(self._store, None) as conn:
            row = await conn.fetchrow(self._sql.dead_letter_delete, subscription_id, position)
        if row is not None:
            logger.warning("subscription %r discarded parked event %d", subscription_id, position)
        return row is not None

    async def discard_all(self, subscription_id: str, *, connection: Any = None) -> int:
        """Delete every parked event of ``subscription_id``; returns how many there were."""
        check_subscription_id(subscription_id)
        async with using(self._store, connection) as conn:
            status = await conn.execute(self._sql.dead_letter_delete_all, subscription_id)
        return int(str(status).rsplit(" ", 1)[-1])

    async def retry(self, subscription_id: str, position: int, projection: AnyProjection) -> bool:
        """Hand a parked event to ``projection`` once more.

        On success the event leaves the table (for a :class:`TransactionalProjection`, in the
        same transaction as the handler's writes) and True is returned. If the handler raises
        again, the row keeps the event with the new error and one more attempt, and False is
        returned. Raises :class:`InvalidInputError` when no such event is parked. The event is
        handled after later events of its aggregate: a retried event is out of order.

        The letter's row lock (two retries of one event take turns) and the transaction are
        held on a connection of its own, not a pooled one, so the handler may use the store.
        """
        check_subscription_id(subscription_id)
        check_position(position)
        # Read before taking the connection: nothing may wait for a pooled connection while
        # holding one. Stored events never change, so reading first is safe. The event is the
        # stored row decoded by the store's mapper, as on every other read path; the letter's
        # JSON copy is only for people reading the table.
        stored = await self._store.load_events_from_position(position - 1, 1)
        event = stored[0] if stored and stored[0].global_position == position else None
        async with own_connection(self._store) as conn:
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        self._sql.dead_letter_get_for_update, subscription_id, position
                    )
                    if row is None:
                        raise _NotParked
                    if event is None:
                        raise _NotStored
                    if event.decode_error is not None:
                        raise event.decode_error
                    if isinstance(projection, TransactionalProjection):
                        await projection.handle_event(event, conn)
                    else:
                        await projection.handle_event(event)
                    await conn.execute(self._sql.dead_letter_delete, subscription_id, position)
            except _NotStored:
                raise InvalidInputError(
                    f"position {position} holds no stored event; discard the letter instead"
                ) from None
            except _NotParked:
                raise InvalidInputError(
                    f"no event at position {position} is parked for subscription "
                    f"{subscription_id!r}; list them with DeadLetterQueue.list()"
                ) from None
            except Exception as exc:  # the handler failed again (whatever it raised)
                if conn.is_closed():
                    raise
                message, trace = describe_error(exc)
                await conn.execute(
                    self._sql.dead_letter_failed_again, subscription_id, position, message, trace, 1
                )
                logger.warning(
                    "retry of parked event %d of subscription %r failed again: %s",
                    position,
                    subscription_id,
                    message,
                )
                return False
        logger.info("parked event %d of subscription %r handled", position, subscription_id)
        return True


class _NotParked(Exception):
    """No such parked event (raised inside the retry transaction, reported outside it)."""


class _NotStored(Exception):
    """The letter's position holds no stored event."""


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        subscription_id=row["subscription_id"],
        global_position=int(row["global_position"]),
        event_id=row["event_id"],
        aggregate_id=row["aggregate_id"],
        aggregate_type=row["aggregate_type"],
        event_type=row["event_type"],
        event=json.loads(row["event"]),
        error=row["error"],
        traceback=row["traceback"],
        attempts=int(row["attempts"]),
        parked_at=row["parked_at"],
        last_failed_at=row["last_failed_at"],
    )
