"""Driver failures reach the caller as the library's typed errors, translated in one place
(issue 16 items 10 and 11, issue 18 item 1)."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from helpers.blocking import holding_sequence, until_an_append_waits
from helpers.streaming_domain import Ticker

from eventuali_pg import (
    ConnectionLimitError,
    DatabaseUnavailableError,
    EventStore,
    PermissionDeniedError,
    StatementCancelledError,
)

WAIT = 30.0


def with_query(dsn: str, query: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


async def test_a_statement_timeout_is_a_cancelled_statement_not_a_lost_connection(
    dsn: str,
) -> None:
    # asyncpg passes unknown DSN query parameters on as session settings
    async with await EventStore.create(with_query(dsn, "statement_timeout=300")) as store:
        ticker = Ticker(id="slow")
        ticker.tick(1)
        async with holding_sequence(dsn) as watcher:
            save = asyncio.create_task(store.save(ticker))
            await until_an_append_waits(watcher)
            with pytest.raises(StatementCancelledError, match="nothing it would have written"):
                await save
        assert ticker.has_uncommitted_events()  # nothing written: save it again
        await store.save(ticker)
        assert await store.get_aggregate_version("slow") == 1


@pytest.fixture
async def role(dsn: str) -> object:
    name = f"eventuali_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        yield admin, name
    finally:
        exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
        if exists:
            await admin.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")
        await admin.close()


def as_role(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{name}@{host}", parts.path, parts.query, ""))


async def test_a_connection_limit_is_named(dsn: str, role: object) -> None:
    admin, name = role  # type: ignore[misc]
    await admin.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT 0")
    with pytest.raises(ConnectionLimitError, match="connection limit") as raised:
        await EventStore.create(as_role(dsn, name))
    assert isinstance(raised.value, DatabaseUnavailableError)  # still catchable as before


async def test_a_missing_privilege_is_named(dsn: str, role: object) -> None:
    admin, name = role  # type: ignore[misc]
    await admin.execute(f"CREATE ROLE {name} LOGIN")
    with pytest.raises(PermissionDeniedError, match="lacks USAGE on schema eventuali"):
        await EventStore.create(as_role(dsn, name))


async def test_the_pool_limit_of_a_role_reached_by_a_read_is_typed(
    dsn: str, role: object
) -> None:
    admin, name = role  # type: ignore[misc]
    await admin.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT 1")
    await admin.execute(f"GRANT USAGE ON SCHEMA eventuali TO {name}")
    await admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA eventuali TO {name}")
    store = await EventStore.create(as_role(dsn, name), pool_min_size=1)
    async with store, store.connection():
        with pytest.raises(ConnectionLimitError):
            async with asyncio.timeout(WAIT):
                await store.get_global_position()  # needs a second connection
