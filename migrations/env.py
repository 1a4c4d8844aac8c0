"""Alembic environment of eventuali-pg.

Runs online on a connection handed over by :func:`eventuali_pg.migrate` (through
``config.attributes["connection"]``), or on its own asyncpg engine built from EVENTUALI_PG_DSN /
DATABASE_URL when alembic runs from the command line; offline (``--sql``) it prints the SQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from eventuali_pg.errors import ConfigurationError
from eventuali_pg.migration import (
    MIGRATION_LOCK_KEY,
    VERSION_LOCATION,
    create_engine_for,
    dsn_from_environment,
    migration_schema,
)
from eventuali_pg.store.schema import VERSION_TABLE, build_metadata


def _loaded_as_a_revision() -> bool:
    """True when another alembic setup lists this folder in its version_locations and loads
    this file as if it were a revision script (it is the environment of our own setup)."""
    try:
        directory = context.script.dir
    except (AttributeError, NameError):  # no environment runs: only revisions are read
        return True
    return Path(directory).resolve() != Path(__file__).resolve().parent


if _loaded_as_a_revision():
    raise ConfigurationError(
        f"{Path(__file__).parent} is the eventuali-pg alembic environment, not a folder of "
        f"revisions: list {VERSION_LOCATION} in your version_locations instead (and "
        "path_separator = newline or space)"
    )

config = context.config
schema = migration_schema()
target_metadata = build_metadata(schema)


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        include_schemas=False,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url="postgresql://", literal_binds=True, dialect_name="postgresql")
    with context.begin_transaction():
        context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    # Serialises concurrent migrators (several processes starting at once); released at commit.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine_for(dsn_from_environment(config.get_main_option("sqlalchemy.url")))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
