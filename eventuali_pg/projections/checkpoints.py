"""Checkpoints: the last global position a subscription has processed, kept in the database.

Checkpoints only move forward. Moving one backwards raises :class:`CheckpointError`; rewinding
is :meth:`CheckpointStore.reset`, an explicit act. Every method takes an optional
``connection``: pass the one of an open transaction to make the checkpoint part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..store.validation import check_position, check_text
from ._db import using
from .sql import ProjectionSql, projection_sql

if TYPE_CHECKING:
    from ..store.event_store import EventStore


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint."""

    subscription_id: str
    position: int
    updated_at: datetime


def check_subscription_id(value: object, *, what: str = "subscription id") -> str:
    """A subscription or checkpoint id: a non-empty string PostgreSQL can store (no NUL, no
    lone surrogate, at most 1024 UTF-8 bytes)."""
    return check_text(value, what=what)


class CheckpointStore:
    """Reads and moves the checkpoints of one event store (``CheckpointStore(store)``)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._sql: ProjectionSql = projection_sql(store.schema)

    async def get(self, subscription_id: str, *, connection: Any = None) -> int | None:
        """The stored position of ``subscription_id``; None when it has no checkpoint."""
        check_subscription_id(subscription_id)
        async with using(self._store, connection) as conn:
            value = await conn.fetchval(self._sql.checkpoint_get, subscription_id)
        return int(value) if value is not None else None

    async def advance(
        self,
        subscription_id: str,
        position: int,
        *,
        expected: int | None = None,
        connection: Any = None,
    ) -> None:
        """Move the checkpoint forward to ``position`` (creating it if needed).

        Already at ``position``: nothing happens. Beyond it: :class:`CheckpointError` (a
        checkpoint never moves backwards; use :meth:`reset`). With ``expected`` the stored
        position must also be exactly ``expected`` (no checkpoint counts as 0), else
        :class:`CheckpointError`: another consumer moved it meanwhile. Inside a transaction the
        checkpoint row stays locked until the transaction ends.
        """
        check_subscription_id(subscription_id)
        check_position(position)
        if expected is not None:
            check_position(expected, what="expected")
        async with using(self._store, connection) as conn:
            if expected is None:
                row = await conn.fetchrow(self._sql.checkpoint_advance, subscription_id, position)
                if row is not None:
                    return
                current = await self._current(conn, subscription_id)
                if current == position:
                    return
                raise self._backwards(subscription_id, current, position)
            if position < expected:
                raise self._backwards(subscription_id, expected, position)
            if position > expected:
                row = await conn.fetchrow(
                    self._sql.checkpoint_advance_from, subscription_id, position, expected
                )
                if row is not None:
                    return
                if expected == 0:
                    row = await conn.fetchrow(
                        self._sql.checkpoint_create, subscription_id, position
                    )
                    if row is not None:
                        return
            current = await self._current(conn, subscription_id)
            if current == expected and position == expected:
                return
            raise CheckpointError(
                f"checkpoint {subscription_id!r} was expected at position {expected} but is at "
                f"{current}: another consumer processed this subscription meanwhile, or the "
                "checkpoint was reset or deleted. Run one consumer per subscription id "
                "(single_active=True hands it over safely); this consumer must resume from the "
                "stored checkpoint"
            )

    async def get_many(
        self, subscription_ids: list[str], *, connection: Any = None
    ) -> dict[str, int]:
        """The stored position of each id (0 for one with no checkpoint)."""
        for subscription_id in subscription_ids:
            check_subscription_id(subscription_id)
        async with using(self._store, connection) as conn:
            rows = await conn.fetch(self._sql.checkpoints_get, subscription_ids)
        stored = {row["subscription_id"]: int(row["position"]) for row in rows}
        return {name: stored.get(name, 0) for name in subscription_ids}

    async def advance_many(
        self, expected: dict[str, int], position: int, *, connection: Any = None
    ) -> None:
        """Move each checkpoint of ``expected`` from exactly its expected position forward to
        ``position``, all or none (inside a transaction); :class:`CheckpointError` when one of
        them is not where expected (another consumer, or a reset)."""
        check_position(position)
        if any(value >= position for value in expected.values()):
            raise self._backwards(", ".join(expected), max(expected.values()), position)
        ids = list(expected)
        async with using(self._store, connection) as conn:
            moved = await conn.fetchval(
                self._sql.checkpoints_advance_from, ids, [expected[i] for i in ids], position
            )
        if moved != len(ids):
            raise CheckpointError(
                f"checkpoints {', '.join(ids)} were not all where this consumer left them: "
                "another consumer processed some of these partitions meanwhile (a group being "
                "resized), or they were reset. This consumer must resume from the stored "
                "checkpoints"
            )

    async def reset(
        self, subscription_id: str, position: int = 0, *, connection: Any = None
    ) -> None:
        """Set the checkpoint to ``position`` (default 0, the whole history), even backwards."""
        check_subscription_id(subscription_id)
        check_position(position)
        async with using(self._store, connection) as conn:
            await conn.execute(self._sql.checkpoint_set, subscription_id, position)

    async def delete(self, subscription_id: str, *, connection: Any = None) -> None:
        """Forget the checkpoint (the next durable subscription starts from 0)."""
        check_subscription_id(subscription_id)
        async with using(self._store, connection) as conn:
            await conn.execute(self._sql.checkpoint_delete, subscription_id)

    async def list(self, prefix: str = "") -> list[Checkpoint]:
        """Every checkpoint whose id starts with ``prefix`` (all by default), sorted by id."""
        check_text(prefix, what="prefix", allow_empty=True)
        async with using(self._store, None) as conn:
            rows = await conn.fetch(self._sql.checkpoint_list, prefix)
        return [
            Checkpoint(row["subscription_id"], int(row["position"]), row["updated_at"])
            for row in rows
        ]

    async def _current(self, conn: Any, subscription_id: str) -> int:
        value = await conn.fetchval(self._sql.checkpoint_get, subscription_id)
        return int(value) if value is not None else 0

    @staticmethod
    def _backwards(subscription_id: str, current: int, position: int) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {subscription_id!r} is at position {current}; moving it back to "
            f"{position} is not allowed, checkpoints only move forward. To reprocess events "
            "deliberately, reset it (CheckpointStore.reset or ProjectionRunner.reset)"
        )
