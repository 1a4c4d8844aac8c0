"""Running the store's own append statement by hand (inside transactions the test controls).

The parameters are built exactly as :class:`EventStore` builds them (one save unit), so a test can
``BEGIN``, append, wait while holding the positions, then commit or roll back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg.codec import EncodedBatch
from eventuali_pg.store.appender import SaveUnit, append_arguments


def append_args(store: EventStore, aggregates: Sequence[Aggregate],
                events: Sequence[Event] | None = None,
                expected: Sequence[int] | None = None) -> tuple[Any, ...]:
    """Parameters of ``store._sql.append`` for one save of ``aggregates``.

    By default the events are the aggregates' uncommitted events and each aggregate is expected
    at its version before them; ``events``/``expected`` override both (for hand-made rows).
    """
    if events is None:
        events = [e for a in aggregates for e in a.get_uncommitted_events()]
    if expected is None:
        expected = [a.version - len(a.get_uncommitted_events()) for a in aggregates]
    batch = EncodedBatch()
    for event in events:
        batch.add(event, max_payload_bytes=store.options.max_payload_bytes)
    unit = SaveUnit(list(aggregates), list(expected), list(events), batch)
    return append_arguments([unit], store.channel)


async def raw_append(conn: asyncpg.Connection, store: EventStore,
                     aggregates: Sequence[Aggregate], events: Sequence[Event] | None = None,
                     expected: Sequence[int] | None = None) -> int:
    """Run the append statement on ``conn``; return the new head (fails if it was rejected).

    On a partitioned events table it then creates the partitions ahead when the statement asks
    for it (``grow_at``), as the store's appender does after its commit: here in the test's own
    transaction, which rolls them back with the events if it rolls back. A statement that
    finds no partition for its positions makes room and runs again, as the appender does.
    """
    arguments = append_args(store, aggregates, events, expected)
    while True:
        try:
            async with conn.transaction():  # a savepoint inside the test's transaction
                row = await conn.fetchrow(store._sql.append, *arguments)
            break
        except asyncpg.CheckViolationError as exc:
            # Partitioned: the statement started before the partitions it needed were
            # attached (the store's appender does the same: make room, run again).
            if "no partition" not in str(exc):
                raise
            # On a connection of its own, as the appender does: taking the partitions' row
            # lock in this transaction, before the sequence row, could deadlock.
            other = await asyncpg.connect(store.dsn)
            try:
                await other.fetchval(store._sql.make_room, len(arguments[6]))
            finally:
                await other.close()
    assert row is not None and row["head"] is not None and not row["rejected"], row
    if row["grow_at"] is not None and row["head"] >= row["grow_at"]:
        await conn.fetchval(store._sql.extend_partitions, row["head"])
    return int(row["head"])
