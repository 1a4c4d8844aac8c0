"""Grant existing roles what a writer and a reader need on the store's schema, and no more.

Every object is found in the catalog (tables, views, sequences, functions of the schema), so
objects added by later migrations are covered: run the grant again after every migration. The
privileges come from :mod:`eventuali_pg.roles.policy`. On each object the role's privileges are
first revoked, then the policy's granted, so running it again (or after the policy changed)
leaves each role with exactly the policy. Runs in one transaction under the migration lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .._db import Connection, database_errors
from .._db.connector import connect
from .._identifiers import validate_identifier
from ..errors import ConfigurationError, PermissionDeniedError, SchemaNotReadyError
from ..store.sql import DEFAULT_SCHEMA
from .policy import (
    DATABASE_PRIVILEGES,
    FUNCTION_PRIVILEGES,
    SCHEMA_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
    ObjectPrivileges,
    table_privileges,
)

if TYPE_CHECKING:
    from ..store.event_store import EventStore

__all__ = ["Grant", "GrantReport", "grant_roles"]

RoleKind = Literal["writer", "reader"]

_OBJECTS = """
SELECT c.relname AS name, CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END AS kind,
       format('%I.%I', n.nspname, c.relname) AS qualified
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT p.proname, 'function', p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1 AND p.prokind IN ('f', 'p')
ORDER BY 2 DESC, 1, 3
"""


@dataclass(frozen=True)
class Grant:
    """What one role holds on one object after the grant."""

    role: str
    kind: RoleKind
    object_type: str
    object_name: str
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class GrantReport:
    """What :func:`grant_roles` did: the schema, the roles, and every grant."""

    schema: str
    database: str
    writer: str | None
    reader: str | None
    grants: list[Grant] = field(default_factory=list)


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


async def grant_roles(
    target: str | EventStore,
    *,
    writer: str | None = None,
    reader: str | None = None,
    schema: str | None = None,
) -> GrantReport:
    """Give existing role ``writer`` what appending, reading, streaming and projections need,
    and role ``reader`` what reading and streaming need, on the store's ``schema``.

    ``target`` is a DSN or an :class:`~eventuali_pg.EventStore` (its DSN and, unless ``schema``
    is given, its schema); connect as the schema's owner (who ran the migrations) or a
    superuser. Run it again after every migration: it covers the objects that exist now.
    Raises :class:`ConfigurationError` for a missing role, the same role twice, or a role that
    owns the schema's tables or is a superuser (privileges would not bind it), and
    :class:`SchemaNotReadyError` when the schema was never migrated, and
    :class:`PermissionDeniedError` when the connected role is neither the tables' owner (nor a
    member of it) nor a superuser.
    """
    if writer is None and reader is None:
        raise ConfigurationError("grant_roles needs a writer role, a reader role, or both")
    for role in (writer, reader):
        if role is not None and (not isinstance(role, str) or not role or "\x00" in role):
            raise ConfigurationError(f"a role name must be a non-empty string, got {role!r}")
    if writer is not None and writer == reader:
        raise ConfigurationError(
            f"role {writer!r} cannot be both the writer and the reader: a reader is a role "
            "that must not write; use two roles"
        )
    if isinstance(target, str):
        dsn, store_schema = target, DEFAULT_SCHEMA
    else:
        dsn, store_schema = target.dsn, target.schema
    schema = validate_identifier(
        schema if schema is not None else store_schema, what="schema name"
    )
    roles: list[tuple[RoleKind, str]] = []
    if writer is not None:
        roles.append(("writer", writer))
    if reader is not None:
        roles.append(("reader", reader))
    # The migrations' lock, for the transaction: a grant never interleaves with a migration
    # adding tables (alembic is imported with it; granting is an administrator's step).
    from ..migration import MIGRATION_LOCK_KEY

    connection = await connect(dsn)
    try:
        with database_errors(dsn, writing=True):
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                await _check(connection, schema, roles)
                database = str(await connection.fetchval("SELECT current_database()"))
                grants = await _apply(connection, schema, database, roles)
    finally:
        await connection.close()
    return GrantReport(schema, database, writer, reader, grants)


async def _check(connection: Connection, schema: str, roles: list[tuple[RoleKind, str]]) -> None:
    owner = await connection.fetchval(
        "SELECT c.relowner::regrole::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
        "AND c.relname = 'events'",
        schema,
    )
    if owner is None:
        raise SchemaNotReadyError(
            f"the event store schema {schema!r} does not exist in this database: run "
            f"`eventuali-pg migrate --schema {schema}` as the owner first, then grant"
        )
    if not await connection.fetchval(
        "SELECT rolsuper OR pg_has_role(current_user, $1::regrole, 'MEMBER') FROM pg_roles "
        "WHERE rolname = current_user",
        owner,
    ):
        user = await connection.fetchval("SELECT current_user")
        raise PermissionDeniedError(
            f"role {user!r} does not own the tables of schema {schema!r} (their owner is "
            f"{owner}): granting is the owner's work (PostgreSQL would skip, with a mere "
            "warning, what this role may not grant). Connect as the owner, who runs the "
            "migrations, or a superuser",
            role=str(user),
        )
    for kind, role in roles:
        row = await connection.fetchrow(
            "SELECT r.rolsuper, pg_has_role(r.oid, (SELECT relowner FROM pg_class "
            "WHERE oid = format('%I.events', $2::text)::regclass), 'MEMBER') AS owns "
            "FROM pg_roles r WHERE r.rolname = $1",
            role,
            schema,
        )
        if row is None:
            raise ConfigurationError(
                f"role {role!r} does not exist: create it first (CREATE ROLE "
                f"{quote_identifier(role)} LOGIN PASSWORD '...'), then grant"
            )
        if row["rolsuper"] or row["owns"]:
            what = (
                "is a superuser"
                if row["rolsuper"]
                else f"owns the tables of schema {schema!r} (or is a member of {owner})"
            )
            raise ConfigurationError(
                f"role {role!r} {what}: privileges do not restrict it, so it cannot be the "
                f"{kind}. Keep the owner for migrations and create separate roles for the "
                "writer and the reader"
            )
    named = dict(roles)
    if "writer" in named and "reader" in named and await connection.fetchval(
        "SELECT pg_has_role($1, $2, 'MEMBER')", named["reader"], named["writer"]
    ):
        raise ConfigurationError(
            f"role {named['reader']!r} is a member of the writer role "
            f"{named['writer']!r}: it would hold the writer's privileges (it could save), "
            f"so it cannot be the reader. Revoke the membership (REVOKE "
            f"{quote_identifier(named['writer'])} FROM "
            f"{quote_identifier(named['reader'])}), then grant"
        )


async def _apply(
    connection: Connection, schema: str, database: str, roles: list[tuple[RoleKind, str]]
) -> list[Grant]:
    objects = await connection.fetch(_OBJECTS, schema)
    grants: list[Grant] = []
    for kind, role in roles:
        name = quote_identifier(role)
        connect = _list(DATABASE_PRIVILEGES, kind)
        # Only the database's owner (or a role with the grant option) can grant CONNECT; the
        # schema's owner often is not, and PUBLIC holds CONNECT by default: then it is left.
        if await connection.fetchval(
            "SELECT has_database_privilege(current_database(), $1)", f"{connect} WITH GRANT OPTION"
        ):
            await connection.execute(
                f"GRANT {connect} ON DATABASE {quote_identifier(database)} TO {name}"
            )
        held = await connection.fetchval(
            "SELECT has_database_privilege($1, current_database(), $2)", role, connect
        )
        await connection.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {name}")
        await connection.execute(
            f"GRANT {_list(SCHEMA_PRIVILEGES, kind)} ON SCHEMA {schema} TO {name}"
        )
        grants.append(
            Grant(role, kind, "database", database, DATABASE_PRIVILEGES.of(kind) if held else ())
        )
        grants.append(Grant(role, kind, "schema", schema, SCHEMA_PRIVILEGES.of(kind)))
        for row in objects:
            object_type, qualified = str(row["kind"]), str(row["qualified"])
            policy = _policy(object_type, str(row["name"]))
            keyword = _KEYWORDS[object_type]
            await connection.execute(f"REVOKE ALL ON {keyword} {qualified} FROM {name}")
            privileges = policy.of(kind)
            if privileges:
                await connection.execute(
                    f"GRANT {', '.join(privileges)} ON {keyword} {qualified} TO {name}"
                )
            grants.append(Grant(role, kind, object_type, qualified, privileges))
    return grants


_KEYWORDS = {"table": "TABLE", "sequence": "SEQUENCE", "function": "ROUTINE"}


def _policy(object_type: str, name: str) -> ObjectPrivileges:
    if object_type == "sequence":
        return SEQUENCE_PRIVILEGES
    if object_type == "function":
        return FUNCTION_PRIVILEGES
    return table_privileges(name)


def _list(policy: ObjectPrivileges, kind: RoleKind) -> str:
    return ", ".join(policy.of(kind))
