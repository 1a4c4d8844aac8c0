"""Direct database checks for the store tests (plain asyncpg, never through the store)."""

from __future__ import annotations

import asyncpg

SCHEMA = "eventuali"


async def table_state(dsn: str, schema: str = SCHEMA) -> tuple[int, int]:
    """(sequence position, number of event rows) read straight from the tables."""
    conn = await asyncpg.connect(dsn)
    try:
        head = await conn.fetchval(f"SELECT position FROM {schema}.global_sequence WHERE id = 1")
        rows = await conn.fetchval(f"SELECT count(*) FROM {schema}.events")
        return int(head), int(rows)
    finally:
        await conn.close()


async def assert_state(dsn: str, head: int, rows: int | None = None,
                       schema: str = SCHEMA) -> None:
    """The sequence is at ``head`` and the events table holds ``rows`` rows (default ``head``)."""
    assert await table_state(dsn, schema) == (head, head if rows is None else rows)
