"""History is append-only at the database level (issue 11 item 2, DESIGN C12): no role, the
owner included, can update, delete or truncate events, or move the global sequence back,
except the tables' owner in an explicit maintenance step."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from helpers.streaming_domain import Ticker

from eventuali_pg import EventStore, PermissionDeniedError


@pytest.fixture
async def saved(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with await EventStore.create(dsn) as store:
        ticker = Ticker(id="history")
        ticker.tick(1)
        ticker.tick(2)
        await store.save(ticker)
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE eventuali.events SET payload = '{}' WHERE global_position = 1",
        "UPDATE eventuali.events SET aggregate_id = 'other'",
        "DELETE FROM eventuali.events WHERE global_position = 2",
        "DELETE FROM eventuali.events",
        "TRUNCATE eventuali.events CASCADE",
        "UPDATE eventuali.global_sequence SET position = 1",
        "UPDATE eventuali.global_sequence SET position = position - 1",
        "UPDATE eventuali.global_sequence SET id = 2, position = position + 1",
        "UPDATE eventuali.global_sequence SET position = NULL",
        "DELETE FROM eventuali.global_sequence",
        "TRUNCATE eventuali.global_sequence",
    ],
)
async def test_a_plain_connection_cannot_rewrite_history(
    saved: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await saved.execute(statement)
    assert await saved.fetchval("SELECT count(*) FROM eventuali.events") == 2
    assert await saved.fetchval("SELECT position FROM eventuali.global_sequence") == 2


async def test_the_sequence_moves_forward(saved: asyncpg.Connection) -> None:
    await saved.execute("UPDATE eventuali.global_sequence SET position = position + 5")
    assert await saved.fetchval("SELECT position FROM eventuali.global_sequence") == 7


async def test_the_owner_can_move_the_sequence_back_in_a_maintenance_step(
    saved: asyncpg.Connection,
) -> None:
    # Forward moves never call the guard function (the trigger's WHEN condition); a move back
    # does, and the function lets the owner's declared maintenance step through.
    async with saved.transaction():
        await saved.execute("SET LOCAL eventuali_pg.maintenance = 'on'")
        await saved.execute("UPDATE eventuali.global_sequence SET position = 1")
    assert await saved.fetchval("SELECT position FROM eventuali.global_sequence") == 1


async def test_another_role_cannot_lift_the_guard(saved: asyncpg.Connection) -> None:
    role = f"eventuali_test_{uuid.uuid4().hex[:8]}"
    await saved.execute(f"CREATE ROLE {role}")
    try:
        await saved.execute(f"GRANT USAGE ON SCHEMA eventuali TO {role}")
        await saved.execute(f"GRANT SELECT, UPDATE, DELETE ON eventuali.events TO {role}")
        async with saved.transaction():
            await saved.execute(f"SET LOCAL ROLE {role}")
            await saved.execute("SET LOCAL eventuali_pg.maintenance = 'on'")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await saved.execute("DELETE FROM eventuali.events")
    finally:
        await saved.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    assert await saved.fetchval("SELECT count(*) FROM eventuali.events") == 2


async def test_the_owner_can_run_a_declared_maintenance_step(saved: asyncpg.Connection) -> None:
    async with saved.transaction():
        await saved.execute("SET LOCAL eventuali_pg.maintenance = 'on'")
        await saved.execute("UPDATE eventuali.events SET metadata = '{\"fixed\": true}'")
    fixed = "SELECT count(*) FROM eventuali.events WHERE metadata ? 'fixed'"
    assert await saved.fetchval(fixed) == 2
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # only for that transaction
        await saved.execute("DELETE FROM eventuali.events")


async def test_the_library_reports_it_as_a_permission_error(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        ticker = Ticker(id="x")
        ticker.tick(1)
        await store.save(ticker)
        with pytest.raises(PermissionDeniedError, match="append-only"):
            async with store.connection() as conn:
                from eventuali_pg._db import database_errors

                with database_errors(store.dsn):
                    await conn.execute("DELETE FROM eventuali.events")
