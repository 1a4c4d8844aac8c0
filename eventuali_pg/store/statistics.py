"""Planner statistics for a young store: ``ANALYZE`` of ``streams`` as the store first grows.

The append statement is prepared once per connection, and after five runs PostgreSQL keeps a
generic plan for it, built from the statistics of that moment. In a new store (or one just
created by a migration) ``streams`` has none, and while it is small a sequential scan is the
cheapest way to find an aggregate's row: the plan keeps scanning the whole table on every
append while it grows, until autovacuum analyzes it (a minute or more later) and the plan is
rebuilt. A benchmark of 64 writers saw the server's CPU per save triple within seconds.

So the writer analyzes ``streams`` itself each time the global head crosses one of
:data:`THRESHOLDS` (once per threshold and store, by whichever append crosses it): the new
statistics invalidate every session's cached plans, which are rebuilt with index lookups.
Beyond the last threshold autovacuum's own schedule keeps up. ``ANALYZE`` only reads a sample
and does not block writers; a role that does not own the table gets a warning from the server
and nothing else (analyze it as the owner, or leave it to autovacuum).
"""

from __future__ import annotations

import logging

from .._db import Connection
from .sql import StoreSql

logger = logging.getLogger("eventuali_pg.store")

#: Global heads at which ``streams`` is analyzed.
THRESHOLDS = (256, 1_024, 4_096, 16_384, 65_536, 262_144)


def crossed(previous_head: int, head: int) -> bool:
    """True when an append that moved the head from ``previous_head`` to ``head`` crossed a
    threshold."""
    return any(previous_head < threshold <= head for threshold in THRESHOLDS)


async def refresh(connection: Connection, sql: StoreSql) -> None:
    """Analyze ``streams`` on ``connection`` (outside a transaction, after an append's commit).
    A failure is logged and otherwise ignored: the appends it follows are committed, and
    autovacuum analyzes the table later anyway."""
    try:
        await connection.execute(sql.analyze_streams)
    except Exception as exc:
        logger.warning("could not analyze %s.streams (%s); autovacuum will", sql.schema, exc)
