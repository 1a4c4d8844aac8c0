"""eventuali-pg migrate on a fresh schema; an explicit DSN never creates a schema by itself."""

from __future__ import annotations

import asyncio
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


async def test_a_schema_migrated_by_a_newer_release(database_dsn: str, fresh_schema: str) -> None:
    from eventuali_pg.store.schema import VERSION_TABLE

    db = ("--dsn", database_dsn, "--schema", fresh_schema)
    assert (await run_cli("migrate", *db)).returncode == 0
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(f"UPDATE {fresh_schema}.{VERSION_TABLE} SET version_num = '0099_future'")
    finally:
        await conn.close()

    migrated = await run_cli("migrate", *db)
    assert migrated.returncode == 1, migrated
    assert_one_clean_error_line(
        migrated.stderr, "error:", "0099_future", "newer eventuali-pg", "upgrade eventuali-pg"
    )
    assert "unexpected" not in migrated.stderr

    current = await run_cli("migrate", "current", *db)
    assert current.returncode == 3, current
    assert current.stdout.strip() == "0099_future"
    assert "newer revision than this eventuali-pg knows" in current.stderr
    assert "upgrade eventuali-pg" in current.stderr
    assert "run `eventuali-pg migrate`" not in current.stderr

    status = await run_cli("status", *db)
    assert status.returncode == 1
    assert_one_clean_error_line(status.stderr, "error:", "newer", "upgrade eventuali-pg")


async def test_concurrent_migrate_commands_report_what_each_did(
    database_dsn: str, fresh_schema: str
) -> None:
    """Two `migrate` processes start while another migrator holds the migration lock: one
    upgrades the schema, the other finds it at the newest revision and says so."""
    from helpers.cli_run import start_cli, stop_process

    from eventuali_pg.migration import MIGRATION_LOCK_KEY

    holder = await asyncpg.connect(database_dsn)
    procs = []
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        procs = [
            await start_cli("migrate", "--dsn", database_dsn, "--schema", fresh_schema)
            for _ in range(2)
        ]
        while await holder.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ) < 2:
            for proc in procs:
                assert proc.returncode is None, await proc.communicate()
            await asyncio.sleep(0.05)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        outputs = [await asyncio.wait_for(proc.communicate(), 60) for proc in procs]
    finally:
        await holder.close()
        for proc in procs:
            await stop_process(proc)
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    lines = sorted(out.decode().strip() for out, _ in outputs)
    assert lines[0].startswith(
        f"schema {fresh_schema!r} is already at the newest revision, {head_revision()}"
    ), lines
    assert lines[1].startswith(f"upgraded schema {fresh_schema!r} from nothing to"), lines


async def test_tables_without_a_known_revision_are_not_migrated_again(
    database_dsn: str, fresh_schema: str
) -> None:
    from eventuali_pg.store.schema import VERSION_TABLE

    db = ("--dsn", database_dsn, "--schema", fresh_schema)
    assert (await run_cli("migrate", *db)).returncode == 0
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(f"DROP TABLE {fresh_schema}.{VERSION_TABLE}")
    finally:
        await conn.close()
    for args in (("migrate",), ("status",)):
        result = await run_cli(*args, *db)
        assert result.returncode == 1, result
        assert_one_clean_error_line(
            result.stderr, "error:", "has tables but no revision", "upgrade eventuali-pg"
        )
        assert "already exists" not in result.stderr
