"""Running the alembic migrations from code (and helpers the migration scripts share)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import weakref
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ._db.connector import connect
from ._dsn import DSN_ENVIRONMENT_VARIABLES, resolve_dsn
from ._identifiers import validate_identifier
from .errors import ConfigurationError, SchemaNotReadyError
from .store.schema import DEFAULT_SCHEMA, VERSION_TABLE

SCHEMA_ATTRIBUTE = "eventuali_pg_schema"
SCHEMA_ENVIRONMENT_VARIABLE = "EVENTUALI_PG_SCHEMA"

#: pg_advisory_xact_lock key taken while migrating, so concurrent migrators run one at a time.
MIGRATION_LOCK_KEY = 0x6576_656E_7475_616C  # "eventual"


def migrations_directory() -> Path:
    """Where the migration scripts are: inside the installed package, else the checkout."""
    spec = importlib.util.find_spec("eventuali_pg.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise ConfigurationError(
        "the eventuali-pg migrations are missing from this installation; reinstall eventuali-pg"
    )


def alembic_config(schema: str = DEFAULT_SCHEMA) -> Config:
    """An alembic ``Config`` for the packaged migrations, targeting PostgreSQL schema ``schema``."""
    validate_identifier(schema, what="schema name")
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.attributes[SCHEMA_ATTRIBUTE] = schema
    return config


def head_revision() -> str:
    """The newest revision of the migrations shipped with this version of the library."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise ConfigurationError("the eventuali-pg migrations have no head revision")
    return head


def known_revisions() -> set[str]:
    """Every revision of the shipped migrations."""
    script = ScriptDirectory.from_config(alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def migration_schema() -> str:
    """The schema the running migration targets (used by env.py and the migration scripts)."""
    from alembic import context

    schema: Any = context.config.attributes.get(SCHEMA_ATTRIBUTE)
    if not schema:
        schema = context.get_x_argument(as_dictionary=True).get("schema")
    if not schema:
        schema = os.environ.get(SCHEMA_ENVIRONMENT_VARIABLE) or DEFAULT_SCHEMA
    return validate_identifier(schema, what="schema name")


def dsn_from_environment(fallback: str | None = None) -> str:
    """The DSN for command-line alembic: the environment first, then alembic.ini's URL."""
    for name in DSN_ENVIRONMENT_VARIABLES:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    if fallback:
        return fallback
    return resolve_dsn(None)


def create_engine_for(dsn: str, *, connect_timeout: float = 10.0) -> AsyncEngine:
    """A one-connection SQLAlchemy engine that connects through asyncpg with ``dsn`` verbatim."""
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=partial(_raw_connect, dsn, connect_timeout),
        poolclass=NullPool,
    )


async def _raw_connect(dsn: str, timeout: float) -> asyncpg.Connection:
    return await connect(dsn, timeout=timeout)


async def migrate(
    dsn: str | None = None, *, schema: str = DEFAULT_SCHEMA, revision: str = "head"
) -> None:
    """Upgrade the event store schema to ``revision`` (default: the newest).

    The DSN defaults to ``EVENTUALI_PG_DSN``, then ``DATABASE_URL``. Safe to run concurrently
    from several processes: an advisory lock makes them take turns.
    """
    await _run(dsn, schema, partial(command.upgrade, revision=revision))


async def downgrade(
    dsn: str | None = None, *, schema: str = DEFAULT_SCHEMA, revision: str = "base"
) -> None:
    """Downgrade the event store schema to ``revision`` (default: drop every table)."""
    await _run(dsn, schema, partial(command.downgrade, revision=revision))


async def current_revision(dsn: str | None = None, *, schema: str = DEFAULT_SCHEMA) -> str | None:
    """The revision the database is at, or None when the schema was never migrated."""
    validate_identifier(schema, what="schema name")
    connection = await connect(resolve_dsn(dsn))
    try:
        return await fetch_revision(connection, schema)
    finally:
        await connection.close()


async def fetch_revision(connection: asyncpg.Connection, schema: str) -> str | None:
    """The alembic revision recorded in ``schema``, or None when there is none."""
    exists = await connection.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{schema}.{VERSION_TABLE}"
    )
    if not exists:
        return None
    value = await connection.fetchval(f"SELECT version_num FROM {schema}.{VERSION_TABLE} LIMIT 1")
    return str(value) if value is not None else None


# Alembic keeps the running migration's context in module globals (alembic.context, alembic.op),
# so two runs interleaving on one event loop would clobber each other: they take turns here
# (other processes are kept apart by the advisory lock in env.py).
_RUN_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _run_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _RUN_LOCKS.get(loop)
    if lock is None:
        lock = _RUN_LOCKS[loop] = asyncio.Lock()
    return lock


async def check_schema_revision(
    connection: asyncpg.Connection, schema: str, *, command: str
) -> str:
    """The schema's revision; raise :class:`SchemaNotReadyError` unless it is the newest.

    ``command`` tells the reader what to run (it differs between code and the command line).
    """
    revision = await fetch_revision(connection, schema)
    head = head_revision()
    if revision is None:
        raise SchemaNotReadyError(
            f"the event store schema {schema!r} does not exist in this database; {command}"
        )
    if revision == head:
        return revision
    if revision in known_revisions():
        raise SchemaNotReadyError(
            f"the event store schema {schema!r} is at revision {revision}, older than this "
            f"library's {head}; {command}"
        )
    raise SchemaNotReadyError(
        f"the event store schema {schema!r} is at revision {revision}, which this version of "
        "eventuali-pg does not know (the database was migrated by a newer release); upgrade "
        "eventuali-pg"
    )


async def _run(dsn: str | None, schema: str, action: Any) -> None:
    config = alembic_config(schema)
    engine = create_engine_for(resolve_dsn(dsn))

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        action(config)

    try:
        async with _run_lock(), engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


def compare_with_metadata(connection: Connection, schema: str = DEFAULT_SCHEMA) -> list[Any]:
    """Differences between the database and the declared metadata (empty when they agree)."""
    from alembic.autogenerate import compare_metadata

    from .store.schema import build_metadata

    context = MigrationContext.configure(
        connection,
        opts={
            "version_table": VERSION_TABLE,
            "version_table_schema": schema,
            "include_schemas": True,
            "include_name": _only_schema(schema),
        },
    )
    return list(compare_metadata(context, build_metadata(schema)))


def _only_schema(schema: str) -> Any:
    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name == schema
        return True

    return include_name
