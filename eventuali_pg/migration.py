"""Running the alembic migrations from code (and helpers the migration scripts share)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ._db import Connection as DbConnection
from ._db.connector import connect
from ._db.errors import refused_privilege
from ._dsn import DSN_ENVIRONMENT_VARIABLES, describe_dsn, resolve_dsn
from ._identifiers import validate_identifier
from .errors import ConfigurationError, PermissionDeniedError, SchemaNotReadyError
from .store.partitioning import check_partition_size, conversion_sql
from .store.revision import oldest_compatible
from .store.schema import DEFAULT_SCHEMA, VERSION_TABLE

logger = logging.getLogger("eventuali_pg.migration")

SCHEMA_ATTRIBUTE = "eventuali_pg_schema"
#: alembic.ini option naming the schema, for an application running our revisions in its setup.
SCHEMA_OPTION = "eventuali_pg_schema"
SCHEMA_ENVIRONMENT_VARIABLE = "EVENTUALI_PG_SCHEMA"
#: Config attribute (or ``-x partition_size=N``) asking for a partitioned events table.
PARTITION_SIZE_ATTRIBUTE = "eventuali_pg_partition_size"

#: What an application lists in its ``version_locations`` to include our revisions (a folder
#: holding only revision scripts; the package's ``env.py`` is one level up, out of the way).
VERSION_LOCATION = "eventuali_pg.migrations:versions"

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
    """The schema the running migration targets (used by env.py and the migration scripts).

    In order: the config attribute set by :func:`migrate`, ``-x schema=NAME``, the
    ``eventuali_pg_schema`` option of the alembic.ini in use (an application's own setup),
    ``EVENTUALI_PG_SCHEMA``, else ``eventuali``.
    """
    from alembic import context

    schema: Any = context.config.attributes.get(SCHEMA_ATTRIBUTE)
    if not schema:
        schema = context.get_x_argument(as_dictionary=True).get("schema")
    if not schema:
        schema = context.config.get_main_option(SCHEMA_OPTION)
    if not schema:
        schema = os.environ.get(SCHEMA_ENVIRONMENT_VARIABLE) or DEFAULT_SCHEMA
    return validate_identifier(str(schema).strip(), what="schema name")


def migration_partition_size() -> int | None:
    """The partition size the running migration was asked for (None: leave the events table
    as it is): the config attribute set by :func:`migrate`, else ``-x partition_size=N``."""
    from alembic import context

    size: Any = context.config.attributes.get(PARTITION_SIZE_ATTRIBUTE)
    if size is None:
        size = context.get_x_argument(as_dictionary=True).get("partition_size")
    if size is None:
        return None
    try:
        return check_partition_size(size)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


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


async def _raw_connect(dsn: str, timeout: float) -> DbConnection:
    return await connect(dsn, timeout=timeout)


async def migrate(
    dsn: str | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
    revision: str = "head",
    partition_size: int | None = None,
) -> None:
    """Upgrade the event store schema to ``revision`` (default: the newest).

    The DSN defaults to ``EVENTUALI_PG_DSN``, then ``DATABASE_URL``. Safe to run concurrently
    from several processes: an advisory lock makes them take turns.

    ``partition_size`` (at least 10) makes the events table partitioned by ``global_position``,
    that many events per partition: at creation, or by converting an existing store in place
    (appends wait while it runs; see the README, "Partitioned events table"). Once chosen, the
    size cannot change; None leaves the table as it is.
    """
    await upgrade_schema(dsn, schema=schema, revision=revision, partition_size=partition_size)


async def downgrade(
    dsn: str | None = None, *, schema: str = DEFAULT_SCHEMA, revision: str = "base"
) -> None:
    """Downgrade the event store schema to ``revision`` (default: drop every table)."""
    await _run(dsn, schema, partial(command.downgrade, revision=revision), upgrade=False)


async def current_revision(dsn: str | None = None, *, schema: str = DEFAULT_SCHEMA) -> str | None:
    """The revision the database is at, or None when the schema was never migrated (or no
    revision this release knows is recorded: see :func:`find_revision`)."""
    validate_identifier(schema, what="schema name")
    connection = await connect(resolve_dsn(dsn))
    try:
        return await fetch_revision(connection, schema)
    finally:
        await connection.close()


async def fetch_revision(connection: DbConnection, schema: str) -> str | None:
    """The alembic revision of the schema, or None when there is none.

    Read from the schema's own version table, else (for an application that runs our revisions
    in its own alembic setup) from the application's version table; see :func:`find_revision`.
    """
    found = await find_revision(connection, schema)
    return found.revision if found is not None else None


@dataclass(frozen=True)
class RecordedRevision:
    """Where and at which revision the event store schema is recorded.

    ``revision`` is None when the schema's tables exist but no revision this release knows is
    recorded anywhere (the database was migrated by a newer release). ``table`` is the version
    table holding it; ``by_application`` is True when that is an application's own alembic
    version table (our revisions run from the application's alembic setup).
    """

    revision: str | None
    table: str | None
    by_application: bool = False

    @property
    def known(self) -> bool:
        """True when this release knows the revision."""
        return self.revision is not None and self.revision in known_revisions()


async def find_revision(connection: DbConnection, schema: str) -> RecordedRevision | None:
    """The schema's recorded revision, or None when the schema was never migrated.

    Our own version table (``<schema>.alembic_version_eventuali_pg``) first. Without it, when the
    schema's ``events`` table exists, an application's alembic version table (any readable table
    with a ``version_num`` column, ``public.alembic_version`` first) that records one of our
    revisions: that is where alembic records them when an application lists
    ``eventuali_pg.migrations:versions`` in its ``version_locations``.
    """
    own = f"{schema}.{VERSION_TABLE}"
    if await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", own):
        value = await connection.fetchval(f"SELECT version_num FROM {own} LIMIT 1")
        return RecordedRevision(str(value), own) if value is not None else None
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.events"):
        return None
    tables = await connection.fetch(
        "SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'version_num' "
        "AND NOT a.attisdropped "
        "WHERE c.relkind IN ('r', 'p') AND c.relname <> $1 "
        "AND has_table_privilege(c.oid, 'SELECT') "
        "ORDER BY n.nspname <> 'public', c.relname <> 'alembic_version', 1",
        VERSION_TABLE,
    )
    known = known_revisions()
    for row in tables:
        versions = await connection.fetch(f"SELECT version_num::text FROM {row['name']}")
        for version in versions:
            if version[0] in known:
                return RecordedRevision(str(version[0]), str(row["name"]), by_application=True)
    return RecordedRevision(None, None)


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
    connection: DbConnection, schema: str, *, command: str
) -> str:
    """The schema's revision; raise :class:`SchemaNotReadyError` unless it is the newest.

    ``command`` tells the reader what to run (it differs between code and the command line).
    """
    found = await find_revision(connection, schema)
    if found is None:
        raise SchemaNotReadyError(
            f"the event store schema {schema!r} does not exist in this database; {command}"
        )
    head = head_revision()
    if found.revision == head:
        return head
    if not found.known:
        recorded = found.revision
        compatible = (
            await oldest_compatible(connection, schema, recorded) if recorded is not None else None
        )
        if recorded is not None and compatible in known_revisions():
            logger.info(
                "schema %r is at revision %s, newer than this library's %s, and declares "
                "itself usable from revision %s on",
                schema,
                found.revision,
                head,
                compatible,
            )
            return recorded
        raise newer_revision_error(schema, found)
    if found.by_application:
        raise SchemaNotReadyError(
            f"the event store schema {schema!r} is at revision {found.revision}, older than "
            f"this library's {head}; its revisions are recorded in {found.table} by your "
            "application's alembic setup: run `alembic upgrade heads` there"
        )
    raise SchemaNotReadyError(
        f"the event store schema {schema!r} is at revision {found.revision}, older than this "
        f"library's {head}; {command}"
    )


def newer_revision_error(schema: str, found: RecordedRevision) -> SchemaNotReadyError:
    """The error for a schema migrated by a newer eventuali-pg than this one."""
    head = head_revision()
    if found.revision is not None:
        return SchemaNotReadyError(
            f"the event store schema {schema!r} is at revision {found.revision}, newer than "
            f"this eventuali-pg knows (its newest is {head}): the database was migrated by a "
            "newer eventuali-pg; upgrade eventuali-pg (pip install -U eventuali-pg) here"
        )
    return SchemaNotReadyError(
        f"the event store schema {schema!r} has tables but no revision this eventuali-pg knows "
        f"(its newest is {head}) is recorded for it, neither in {schema}.{VERSION_TABLE} nor in "
        "an application's alembic version table: most likely a newer release migrated it "
        "(upgrade eventuali-pg: pip install -U eventuali-pg); if your application's revisions "
        "revise ours, keep our branch independent so its revision stays recorded"
    )


@dataclass(frozen=True)
class UpgradeResult:
    """What one upgrade did: the revision before and after, and where it is recorded."""

    schema: str
    before: str | None
    after: str | None
    table: str | None
    by_application: bool = False

    @property
    def changed(self) -> bool:
        """True when the upgrade ran at least one revision."""
        return self.before != self.after


async def upgrade_schema(
    dsn: str | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
    revision: str = "head",
    partition_size: int | None = None,
) -> UpgradeResult:
    """Like :func:`migrate`, and say what was done: the revisions before and after the upgrade
    are read under the migration lock, so concurrent runs report what each really did.

    A schema whose revisions an application records in its own alembic version table is left
    to that application: at the newest revision nothing happens; older, it raises
    :class:`SchemaNotReadyError` telling to run the application's ``alembic upgrade heads``.
    """
    if partition_size is not None:
        try:
            partition_size = check_partition_size(partition_size)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    return await _run(
        dsn,
        schema,
        partial(command.upgrade, revision=revision),
        upgrade=True,
        partition_size=partition_size,
    )


async def _run(
    dsn: str | None,
    schema: str,
    action: Any,
    *,
    upgrade: bool,
    partition_size: int | None = None,
) -> UpgradeResult:
    resolved = resolve_dsn(dsn)
    try:
        return await _run_migrations(
            resolved, schema, action, upgrade=upgrade, partition_size=partition_size
        )
    except Exception as exc:
        refused = refused_privilege(exc)
        if refused is None:
            raise
        raise _owner_only(refused, resolved, schema) from exc


def _owner_only(refused: BaseException, dsn: str, schema: str) -> PermissionDeniedError:
    """A migration refused for a missing privilege: migrations are the owner's."""
    role = describe_dsn(dsn).user or None
    who = f"role {role!r}" if role else "the connected role"
    reason = str(refused).strip()
    return PermissionDeniedError(
        f"{who} may not migrate schema {schema!r} (PostgreSQL: {reason}): migrations run as "
        "the schema's owner (the role that created it, or one allowed to CREATE in the "
        "database), not as a writer or reader role. Run `eventuali-pg migrate` connected as "
        "the owner, then `eventuali-pg grant --writer ROLE --reader ROLE` again",
        role=role,
    )


async def _run_migrations(
    dsn: str, schema: str, action: Any, *, upgrade: bool, partition_size: int | None = None
) -> UpgradeResult:
    config = alembic_config(schema)
    if partition_size is not None:
        config.attributes[PARTITION_SIZE_ATTRIBUTE] = partition_size
    engine = create_engine_for(dsn)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        action(config)

    try:
        async with _run_lock(), engine.begin() as connection:
            # The lock env.py takes too (it is reentrant); taken here first so that what is
            # read before and after is what this run found and left.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            driver: DbConnection = (await connection.get_raw_connection()).driver_connection
            before = await find_revision(driver, schema)
            if before is not None and not before.known:
                raise newer_revision_error(schema, before)
            if before is not None and before.by_application:
                return _left_to_the_application(schema, before, upgrade=upgrade)
            await connection.run_sync(run)
            after = await find_revision(driver, schema)
            if partition_size is not None:
                await _partition(driver, schema, partition_size, after)
    finally:
        await engine.dispose()
    return UpgradeResult(
        schema,
        before.revision if before is not None else None,
        after.revision if after is not None else None,
        after.table if after is not None else None,
    )


async def _partition(
    connection: DbConnection, schema: str, size: int, found: RecordedRevision | None
) -> None:
    # A store already at the newest revision before this run is converted here (the revision
    # converts it when it runs); converting again with the same size does nothing.
    if found is None or found.revision != head_revision():
        raise ConfigurationError(
            f"a partitioned events table needs the schema {schema!r} at the newest revision "
            f"({head_revision()}); migrate to head with the partition size"
        )
    existing = await partition_size_of(connection, schema)
    if existing is not None and existing != size:
        raise ConfigurationError(
            f"the events table of schema {schema!r} is already partitioned by {existing} events; "
            "the partition size cannot change once chosen"
        )
    await connection.execute(conversion_sql(schema, size))


async def partition_size_of(connection: DbConnection, schema: str) -> int | None:
    """The partition size of the schema's events table, None when it is not partitioned."""
    validate_identifier(schema, what="schema name")
    table = f"{schema}.event_partitioning"
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return None
    size = await connection.fetchval(f"SELECT partition_size FROM {table} WHERE id = 1")
    return int(size) if size is not None else None


def _left_to_the_application(
    schema: str, found: RecordedRevision, *, upgrade: bool
) -> UpgradeResult:
    if upgrade and found.revision == head_revision():
        return UpgradeResult(schema, found.revision, found.revision, found.table, True)
    what = "upgrade it there: run `alembic upgrade heads`" if upgrade else "downgrade it there"
    raise SchemaNotReadyError(
        f"the event store schema {schema!r} is at revision {found.revision}; its revisions are "
        f"recorded in {found.table} by your application's alembic setup, so {what} in your "
        "application"
    )


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
