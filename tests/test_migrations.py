"""C7: the alembic migrations produce exactly the metadata, go down and up, run from the CLI
and concurrently. Each test works in its own schema and drops it afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers.domain import Counter

import eventuali_pg
from eventuali_pg import EventStore
from eventuali_pg.migration import (
    compare_with_metadata,
    create_engine_for,
    head_revision,
    known_revisions,
)
from eventuali_pg.store.schema import BRANCH_LABEL, SCHEMA_REVISION, VERSION_TABLE, table_names

REPOSITORY = Path(__file__).resolve().parent.parent


async def _compare(dsn: str, schema: str) -> list[Any]:
    engine = create_engine_for(dsn)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare_with_metadata, schema)
    finally:
        await engine.dispose()


async def _tables(dsn: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema)
        return {r["table_name"] for r in rows}
    finally:
        await conn.close()


async def _sequence_position(dsn: str, schema: str) -> list[tuple[int, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(
            f"SELECT id, position FROM {schema}.global_sequence")]
    finally:
        await conn.close()


@pytest.fixture
def schema(scratch_schema: str) -> str:
    return scratch_schema


def _expected_tables(schema: str) -> set[str]:
    return {name.split(".", 1)[1] for name in table_names(schema)} | {VERSION_TABLE}


def test_revisions() -> None:
    assert head_revision() == SCHEMA_REVISION
    assert SCHEMA_REVISION in known_revisions()
    assert BRANCH_LABEL == "eventuali_pg"


async def test_migrate_matches_metadata(dsn: str, schema: str) -> None:
    assert await eventuali_pg.current_revision(dsn, schema=schema) is None
    await eventuali_pg.migrate(dsn, schema=schema)
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()
    assert await _tables(dsn, schema) == _expected_tables(schema)
    assert {"events", "global_sequence", "checkpoints"} <= _expected_tables(schema)
    assert await _sequence_position(dsn, schema) == [(1, 0)]
    assert await _compare(dsn, schema) == []
    # migrating again changes nothing
    await eventuali_pg.migrate(dsn, schema=schema)
    assert await _compare(dsn, schema) == []
    assert await _sequence_position(dsn, schema) == [(1, 0)]
    # the shared schema is untouched and also matches
    assert await _compare(dsn, "eventuali") == []


async def test_compare_finds_a_dropped_index(dsn: str, schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP INDEX {schema}.events_event_type_position_idx")
    finally:
        await conn.close()
    diffs = await _compare(dsn, schema)
    assert diffs, "compare_with_metadata missed a dropped index"
    assert any(d[0] == "add_index" and d[1].name == "events_event_type_position_idx"
               for d in diffs if isinstance(d, tuple)), diffs


async def test_compare_finds_an_extra_column(dsn: str, schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER TABLE {schema}.checkpoints ADD COLUMN surprise int")
    finally:
        await conn.close()
    diffs = await _compare(dsn, schema)
    assert any(isinstance(d, tuple) and d[0] == "remove_column" for d in diffs), diffs


async def test_downgrade_to_base_and_upgrade_again(dsn: str, schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=schema)
    async with await EventStore.create(dsn, schema=schema) as store:
        counter = Counter(id="c")
        counter.increment()
        await store.save(counter)
        assert await store.get_global_position() == 1

    await eventuali_pg.downgrade(dsn, schema=schema)
    assert await eventuali_pg.current_revision(dsn, schema=schema) is None
    assert await _tables(dsn, schema) <= {VERSION_TABLE}

    await eventuali_pg.migrate(dsn, schema=schema)
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()
    assert await _compare(dsn, schema) == []
    async with await EventStore.create(dsn, schema=schema, channel="mig_channel") as store:
        assert await store.get_global_position() == 0
        counter = Counter(id="c")
        counter.increment()
        await store.save(counter)
        assert await store.get_global_position() == 1
        assert store.channel == "mig_channel"


async def test_stores_in_two_schemas_are_independent(dsn: str, schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=schema)
    async with (await EventStore.create(dsn, schema=schema) as mine,
                await EventStore.create(dsn) as shared):
        counter = Counter(id="same-id")
        counter.increment()
        counter.increment()
        await mine.save(counter)
        other = Counter(id="same-id")
        other.increment()
        await shared.save(other)
        assert await mine.get_global_position() == 2
        assert await shared.get_global_position() == 1
        assert await mine.get_aggregate_version("same-id") == 2
        assert await shared.get_aggregate_version("same-id") == 1


def _alembic(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EVENTUALI_PG_DSN", "DATABASE_URL", "EVENTUALI_PG_SCHEMA")}
    env["EVENTUALI_PG_DSN"] = dsn
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPOSITORY / "alembic.ini"), *args],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


async def test_alembic_command_line(dsn: str, schema: str) -> None:
    result = await asyncio.to_thread(_alembic, dsn, "-x", f"schema={schema}", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()
    assert await _compare(dsn, schema) == []
    async with await EventStore.create(dsn, schema=schema) as store:
        assert await store.get_global_position() == 0

    result = await asyncio.to_thread(_alembic, dsn, "-x", f"schema={schema}", "current")
    assert result.returncode == 0, result.stderr
    assert head_revision() in result.stdout

    result = await asyncio.to_thread(_alembic, dsn, "-x", f"schema={schema}", "downgrade",
                                     "base")
    assert result.returncode == 0, result.stderr
    assert await eventuali_pg.current_revision(dsn, schema=schema) is None

    result = await asyncio.to_thread(_alembic, dsn, "-x", f"schema={schema}", "upgrade",
                                     f"{BRANCH_LABEL}@head")
    assert result.returncode == 0, result.stderr
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()


async def test_alembic_offline_sql() -> None:
    result = await asyncio.to_thread(
        _alembic, "postgresql://nobody@127.0.0.1:1/none", "-x", "schema=offline_schema",
        "upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE offline_schema.events" in result.stdout
    assert "events_aggregate_type_position_idx" in result.stdout


async def test_concurrent_migrations(dsn: str, schema: str) -> None:
    await asyncio.gather(*(eventuali_pg.migrate(dsn, schema=schema) for _ in range(3)))
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()
    assert await _compare(dsn, schema) == []
    assert await _sequence_position(dsn, schema) == [(1, 0)]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.{VERSION_TABLE}") == 1
    finally:
        await conn.close()


async def test_concurrent_migrations_from_processes(dsn: str, schema: str) -> None:
    results = await asyncio.gather(*(
        asyncio.to_thread(_alembic, dsn, "-x", f"schema={schema}", "upgrade", "head")
        for _ in range(3)
    ))
    for result in results:
        assert result.returncode == 0, result.stderr
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()
    assert await _compare(dsn, schema) == []
    assert await _sequence_position(dsn, schema) == [(1, 0)]


async def test_shared_schema_is_at_head(dsn: str) -> None:
    assert await eventuali_pg.current_revision(dsn) == head_revision()
    assert await _tables(dsn, "eventuali") == _expected_tables("eventuali")


async def test_bad_schema_names_are_refused(dsn: str) -> None:
    for bad in ("Bad", "x;drop", "pg_x", ""):
        with pytest.raises(eventuali_pg.ConfigurationError):
            await eventuali_pg.migrate(dsn, schema=bad)
        with pytest.raises(eventuali_pg.ConfigurationError):
            await eventuali_pg.current_revision(dsn, schema=bad)


# ----------------------------------------------------------------------------------------------
# The README's recipe: eventuali-pg's revisions inside an application's own alembic setup.

APP_ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
path_separator = newline
version_locations =
    %(here)s/migrations/versions
    eventuali_pg.migrations:versions
eventuali_pg_schema = {schema}
"""

APP_ENV_PY = '''\
import asyncio
import os

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine


def run(connection):
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


async def main():
    url = os.environ["APP_DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()
    await engine.dispose()


asyncio.run(main())
'''

APP_REVISION = '''\
"""The application's own table."""
from alembic import op
import sqlalchemy as sa

revision = "a1_orders"
down_revision = None
branch_labels = ("app",)
depends_on = None


def upgrade():
    op.create_table("app_orders", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("app_orders")
'''


def _application(folder: Path, schema: str) -> Path:
    """An application folder with its own alembic setup that includes eventuali-pg's revisions."""
    (folder / "migrations" / "versions").mkdir(parents=True)
    (folder / "alembic.ini").write_text(APP_ALEMBIC_INI.format(schema=schema))
    (folder / "migrations" / "env.py").write_text(APP_ENV_PY)
    (folder / "migrations" / "versions" / "a1_orders.py").write_text(APP_REVISION)
    return folder


def _app_alembic(folder: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EVENTUALI_PG_DSN", "DATABASE_URL", "EVENTUALI_PG_SCHEMA")}
    env["APP_DATABASE_URL"] = dsn
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
async def app_database(pg_admin_dsn: str) -> AsyncIterator[str]:
    from _server import create_database, drop_database

    name = f"eventuali_app_{uuid.uuid4().hex[:10]}"
    dsn = await create_database(pg_admin_dsn, name)
    try:
        yield dsn
    finally:
        await drop_database(pg_admin_dsn, name)


async def test_the_migrations_run_inside_an_application_alembic_setup(
    app_database: str, tmp_path: Path
) -> None:
    from helpers.cli_run import run_cli

    dsn, schema = app_database, "app_events"
    app = _application(tmp_path / "app", schema)
    upgrade = await asyncio.to_thread(_app_alembic, app, dsn, "upgrade", "heads")
    assert upgrade.returncode == 0, upgrade.stderr
    conn = await asyncpg.connect(dsn)
    try:
        recorded = {r["version_num"] for r in await conn.fetch(
            "SELECT version_num FROM public.alembic_version")}
        assert await conn.fetchval("SELECT to_regclass('public.app_orders')") is not None
    finally:
        await conn.close()
    assert recorded == {"a1_orders", head_revision()}
    assert await _compare(dsn, schema) == []
    assert await eventuali_pg.current_revision(dsn, schema=schema) == head_revision()

    async with await EventStore.create(dsn, schema=schema) as store:
        counter = Counter(id="in-the-app")
        counter.increment()
        await store.save(counter)
        assert await store.get_global_position() == 1

    again = await asyncio.to_thread(_app_alembic, app, dsn, "upgrade", "heads")
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr

    migrated = await run_cli("migrate", "--dsn", dsn, "--schema", schema)
    assert migrated.returncode == 0, migrated.stderr
    assert "already at the newest revision" in migrated.stdout
    assert "alembic_version" in migrated.stdout
    current = await run_cli("migrate", "current", "--dsn", dsn, "--schema", schema)
    assert current.returncode == 0, current.stderr
    assert current.stdout.startswith(f"{head_revision()} (head)")
    async with await EventStore.create(dsn, schema=schema) as store:
        assert await store.get_global_position() == 1


async def test_an_application_managed_schema_behind_is_left_to_the_application(
    app_database: str, tmp_path: Path
) -> None:
    from helpers.cli_run import assert_one_clean_error_line, run_cli

    dsn, schema = app_database, "app_events"
    app = _application(tmp_path / "app", schema)
    partial = await asyncio.to_thread(_app_alembic, app, dsn, "upgrade", "0001_initial")
    assert partial.returncode == 0, partial.stderr

    with pytest.raises(eventuali_pg.SchemaNotReadyError, match="alembic upgrade heads"):
        await EventStore.create(dsn, schema=schema)
    migrated = await run_cli("migrate", "--dsn", dsn, "--schema", schema)
    assert migrated.returncode == 1, migrated
    assert_one_clean_error_line(
        migrated.stderr, "error:", "public.alembic_version", "alembic upgrade heads"
    )
    assert await _tables(dsn, schema) == {"events", "global_sequence", "checkpoints"}
    current = await run_cli("migrate", "current", "--dsn", dsn, "--schema", schema)
    assert current.returncode == 3
    assert current.stdout.strip() == "0001_initial"
    assert "alembic upgrade heads" in current.stderr

    upgrade = await asyncio.to_thread(_app_alembic, app, dsn, "upgrade", "heads")
    assert upgrade.returncode == 0, upgrade.stderr
    async with await EventStore.create(dsn, schema=schema) as store:
        assert await store.get_global_position() == 0


async def test_the_package_folder_as_a_version_location_is_a_clear_error(
    app_database: str, tmp_path: Path
) -> None:
    app = _application(tmp_path / "app", "app_events")
    ini = app / "alembic.ini"
    ini.write_text(ini.read_text().replace(
        "eventuali_pg.migrations:versions", "eventuali_pg.migrations:."))
    result = await asyncio.to_thread(_app_alembic, app, app_database, "upgrade", "heads")
    assert result.returncode != 0
    assert "eventuali_pg.migrations:versions" in result.stderr
    assert "asyncio.run() cannot be called" not in result.stderr
