"""Forgetting a data subject: destroy its key, keep every event and position.

``await store.forget(subject_id)`` runs one transaction that

1. destroys the subject's key (the row stays as a tombstone: key NULL, ``forgotten_at`` set;
   a subject that never had a key gets a tombstone too), waiting for saves that hold the key
   (they commit first, and are forgotten with the rest);
2. deletes the snapshots of the aggregate whose id is the subject and every snapshot whose
   state mentions the subject id;
3. appends one :class:`SubjectForgotten` event (``subject_id``) to the stream
   :data:`FORGET_STREAM`.

That event is how projections learn of it, in order and across processes: a
:class:`~eventuali_pg.projections.ProjectionRunner` calls ``projection.on_forget(subject_id)``
when it reaches the event, after every event written with the key and before any written
after it. Its position is returned: ``runner.wait_for_checkpoint(position)`` waits until a read
model has erased the subject.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._db import database_errors
from ..errors import InvalidInputError
from ..models import Aggregate, Event
from ..personal import FORGET_AGGREGATE_TYPE, FORGET_EVENT_TYPE, FORGET_STREAM
from .validation import check_text

if TYPE_CHECKING:
    from .event_store import EventStore

__all__ = ["FORGET_EVENT_TYPE", "FORGET_STREAM", "SubjectForgotten", "forget", "new_subject_key"]


class SubjectForgotten(Event, event_type=FORGET_EVENT_TYPE):
    """Appended by :meth:`EventStore.forget`: the key of ``subject_id`` was destroyed."""

    subject_id: str
    #: The key generation destroyed.
    generation: int


class _ForgetLog(Aggregate):
    aggregate_type = FORGET_AGGREGATE_TYPE

    def apply_eventuali_pg_subject_forgotten(self, event: SubjectForgotten) -> None:
        """Nothing to keep: the log is its events."""


def check_subject_id(subject_id: object) -> str:
    """``subject_id`` if it is a valid subject id (the rules of aggregate ids)."""
    return check_text(subject_id, what="subject id")


async def forget(store: EventStore, subject_id: str) -> int | None:
    """See :meth:`EventStore.forget`."""
    check_subject_id(subject_id)
    keys = store._keys
    position: int | None = None
    async with store.transaction() as tx:
        conn = tx.connection
        with database_errors(store.dsn, writing=True):
            generation = await conn.fetchval(keys.sql.forget, subject_id)
            if generation is None:
                generation = await conn.fetchval(keys.sql.tombstone, subject_id)
            if generation is not None:
                await conn.execute(keys.sql.delete_snapshots, subject_id)
                await conn.fetchval(store.sql.lock_streams, [FORGET_STREAM])
                version = await conn.fetchval(store.sql.aggregate_version, FORGET_STREAM)
        if generation is not None:
            log = _ForgetLog(id=FORGET_STREAM, version=int(version or 0))
            log._persisted = True
            event = log.apply(SubjectForgotten(subject_id=subject_id, generation=generation))
            await tx.save(log)
    keys.evict(subject_id)
    if generation is not None:
        position = event.global_position
    return position


async def new_subject_key(store: EventStore, subject_id: str) -> int:
    """See :meth:`EventStore.new_subject_key`."""
    check_subject_id(subject_id)
    keys = store._keys
    with database_errors(store.dsn, writing=True):
        async with store.connection() as conn:
            generation = await conn.fetchval(keys.sql.renew, subject_id, os.urandom(32))
            if generation is None:
                row = await conn.fetchrow(keys.sql.read, [subject_id])
    keys.evict(subject_id)
    if generation is None:
        state = "has a key already" if row is not None else "has no key yet"
        raise InvalidInputError(
            f"subject {subject_id!r} is not forgotten ({state}); new_subject_key is only for "
            "a forgotten subject that may be stored again"
        )
    return int(generation)
