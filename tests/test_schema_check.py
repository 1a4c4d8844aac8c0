"""Opening a store checks the schema revision cheaply (no alembic import when it is current)
and accepts a newer schema that declares itself compatible (issue 18 item 6)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

import eventuali_pg
from eventuali_pg import EventStore, SchemaNotReadyError
from eventuali_pg.store.revision import SCHEMA_REVISION, VERSION_TABLE


@pytest.fixture
async def schema(dsn: str, scratch_schema: str) -> str:
    await eventuali_pg.migrate(dsn, schema=scratch_schema)
    return scratch_schema


async def test_opening_a_current_store_does_not_import_alembic(dsn: str) -> None:
    program = (
        "import asyncio, sys\n"
        "from eventuali_pg import EventStore\n"
        "async def main():\n"
        f"    async with await EventStore.create({dsn!r}):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('alembic', 'sqlalchemy') if m in sys.modules))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", program, stdout=subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    assert process.returncode == 0 and out.decode().strip() == "[]"


async def pretend_a_newer_release_migrated(dsn: str, schema: str, oldest: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"UPDATE {schema}.{VERSION_TABLE} SET version_num = '9999_future'")
        await conn.execute(
            f"UPDATE {schema}.schema_compatibility SET revision = '9999_future', "
            "oldest_compatible = $1",
            oldest,
        )
    finally:
        await conn.close()


async def test_a_newer_schema_declaring_itself_compatible_is_accepted(
    dsn: str, schema: str
) -> None:
    await pretend_a_newer_release_migrated(dsn, schema, SCHEMA_REVISION)
    async with await EventStore.create(dsn, schema=schema) as store:
        assert await store.get_global_position() == 0


async def test_a_newer_schema_not_compatible_is_refused(dsn: str, schema: str) -> None:
    await pretend_a_newer_release_migrated(dsn, schema, "9998_also_future")
    with pytest.raises(SchemaNotReadyError, match="newer"):
        await EventStore.create(dsn, schema=schema)
