"""Which schema revision this library needs, checked without importing alembic.

Opening a store compares the revision recorded in ``<schema>.alembic_version_eventuali_pg``
with :data:`SCHEMA_REVISION` in one query. Anything else (no schema, an older or newer
revision, revisions recorded by an application's own alembic setup) is explained by
:func:`eventuali_pg.migration.check_schema_revision`, which imports alembic only then.

A newer release can run against a schema migrated by a newer one when the newer revisions
declare themselves compatible: every revision records in ``<schema>.schema_compatibility`` the
oldest library revision that can still use the schema as it leaves it.
"""

from __future__ import annotations

from typing import Any

#: Alembic revision that this version of the library expects the database to be at.
SCHEMA_REVISION = "0011_sequence_trigger_guard"

#: Alembic branch label of the eventuali-pg migrations, for use inside an application's own
#: alembic setup (``alembic upgrade eventuali_pg@head``).
BRANCH_LABEL = "eventuali_pg"

#: Name of the alembic version table, kept inside the store's own schema.
VERSION_TABLE = "alembic_version_eventuali_pg"

#: One-row table where each revision records the oldest library revision it stays usable by.
COMPATIBILITY_TABLE = "schema_compatibility"


async def is_current(connection: Any, schema: str) -> bool:
    """True when the schema's own version table records :data:`SCHEMA_REVISION`."""
    table = f"{schema}.{VERSION_TABLE}"
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return False
    recorded = await connection.fetchval(f"SELECT version_num FROM {table} LIMIT 1")
    return bool(recorded == SCHEMA_REVISION)


async def oldest_compatible(connection: Any, schema: str, revision: str) -> str | None:
    """The oldest library revision the schema at ``revision`` declares itself usable by; None
    when it declares nothing for that revision (a declaration left by another revision does
    not count)."""
    table = f"{schema}.{COMPATIBILITY_TABLE}"
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return None
    row = await connection.fetchrow(
        f"SELECT revision, oldest_compatible FROM {table} WHERE id = 1"
    )
    if row is None or row["revision"] != revision:
        return None
    return str(row["oldest_compatible"])
