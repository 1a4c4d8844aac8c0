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
    """Run the append statement on ``conn``; return the new head (fails if it was rejected)."""
    row = await conn.fetchrow(store._sql.append, *append_args(store, aggregates, events, expected))
    assert row is not None and row["head"] is not None and not row["rejected"], row
    return int(row["head"])
