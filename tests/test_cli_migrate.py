"""eventuali-pg migrate on a fresh schema; an explicit DSN never creates a schema by itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from helpers.cli_run import assert_one_clean_error_line, run_cli

from eventuali_pg.migration import head_revision


@pytest.fixture
async def fresh_schema(database_dsn: str) -> AsyncIterator[str]:
    schema = f"cli_{uuid.uuid4().hex[:10]}"
    yield schema
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_migrate_then_current_shows_the_head(database_dsn: str, fresh_schema: str) -> None:
    db = ("--dsn", database_dsn, "--schema", fresh_schema)
    before = await run_cli("migrate", "current", *db)
    assert before.returncode == 3, before
    assert before.stdout.strip() == "none"
    assert "eventuali-pg migrate" in before.stderr

    migrated = await run_cli("migrate", *db)
    assert migrated.returncode == 0, migrated.stderr
    assert head_revision() in migrated.stdout
    assert "from nothing" in migrated.stdout

    again = await run_cli("migrate", *db)
    assert again.returncode == 0, again.stderr
    assert "already at the newest revision" in again.stdout

    current = await run_cli("migrate", "current", *db)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{head_revision()} (head)"

    flag = await run_cli("migrate", "--current", "--json", *db)
    assert flag.returncode == 0, flag.stderr
    assert flag.json() == {
        "schema": fresh_schema,
        "revision": head_revision(),
        "head": head_revision(),
        "up_to_date": True,
    }


@pytest.mark.parametrize("name", ["status", "events", "tail"])
async def test_a_missing_schema_names_the_migrate_command(
    database_dsn: str, fresh_schema: str, name: str
) -> None:
    result = await run_cli(name, "--dsn", database_dsn, "--schema", fresh_schema)
    assert result.returncode == 1, result
    assert_one_clean_error_line(
        result.stderr, "error:", f"{fresh_schema!r} does not exist", "eventuali-pg migrate"
    )
    conn = await asyncpg.connect(database_dsn)
    try:
        assert await conn.fetchval("SELECT to_regnamespace($1)", fresh_schema) is None
    finally:
        await conn.close()


async def test_dsn_from_the_environment(database_dsn: str) -> None:
    from helpers.cli_run import cli_env

    result = await run_cli("migrate", "current", env=cli_env(EVENTUALI_PG_DSN=database_dsn))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{head_revision()} (head)"
    assert "embedded" not in result.stderr
