"""A refused privilege (SQLSTATE 42501), told in terms of the roles: which privilege on which
object, and which grant gives it.

PostgreSQL says "permission denied for table events" but not which privilege it checked, so the
privilege is taken from the role policy (:mod:`eventuali_pg.roles.policy`): a read needs
SELECT; a write needs what the writer holds on that object beyond SELECT.
"""

from __future__ import annotations

import re

from .._dsn import describe_dsn
from ..errors import PermissionDeniedError

_DENIED = re.compile(
    r'^permission denied for (?P<kind>table|view|relation|materialized view|sequence|schema|'
    r'function|procedure|database|large object|type|foreign table) "?(?P<name>[^"]+?)"?$'
)


def describe_denial(
    reason: str, dsn: str, *, writing: bool, hint: str = ""
) -> PermissionDeniedError:
    """The error for PostgreSQL's refusal ``reason`` (its message) on a connection to ``dsn``."""
    role = describe_dsn(dsn).user or None
    who = f"role {role!r}" if role else "the connected role"
    grant_role = role or "ROLE"
    match = _DENIED.match(reason.strip())
    if match is None:
        # Not a missing grant: the append-only triggers refuse with this SQLSTATE too, and
        # "must be owner of ..." is an owner-only statement (migrations, grants).
        detail = f" ({hint})" if hint else ""
        owner_only = reason.startswith("must be owner")
        advice = (
            "; this is the schema owner's work (migrations run as the owner): connect as the "
            "role that owns the schema"
            if owner_only
            else ""
        )
        return PermissionDeniedError(
            f"PostgreSQL refused {who} a statement: {reason}{detail}{advice}", role=role
        )
    kind = match["kind"]
    name = match["name"]
    kind = "table" if kind in ("relation", "view", "materialized view", "foreign table") else kind
    privileges, needs_writer = _needed(kind, name, writing=writing)
    what = ", ".join(privileges)
    if needs_writer:
        advice = (
            "Saving and running projections need the writer's privileges: connect as the "
            f"writer role, or have the schema's owner run `eventuali-pg grant --writer "
            f"{grant_role}`"
        )
    else:
        advice = (
            "Reading and streaming need the reader's (or the writer's) privileges: have the "
            f"schema's owner run `eventuali-pg grant --reader {grant_role}` (or --writer)"
        )
    return PermissionDeniedError(
        f"{who} lacks {what} on {kind} {name} (PostgreSQL: {reason}). {advice}; run the "
        "grant again after every migration",
        role=role,
        privileges=privileges,
        object_type=kind,
        object_name=name,
    )


def _needed(kind: str, name: str, *, writing: bool) -> tuple[tuple[str, ...], bool]:
    """(the privileges the operation needs on the object, whether only a writer has them)."""
    from ..roles.policy import (
        DATABASE_PRIVILEGES,
        FUNCTION_PRIVILEGES,
        SCHEMA_PRIVILEGES,
        SEQUENCE_PRIVILEGES,
        table_privileges,
    )

    if kind == "table":
        policy = table_privileges(name)
        if not writing:
            return ("SELECT",), "SELECT" not in policy.reader
        changes = tuple(p for p in policy.writer if p != "SELECT")
        return changes or policy.writer, True
    by_kind = {
        "sequence": SEQUENCE_PRIVILEGES,
        "function": FUNCTION_PRIVILEGES,
        "procedure": FUNCTION_PRIVILEGES,
        "schema": SCHEMA_PRIVILEGES,
        "database": DATABASE_PRIVILEGES,
    }
    other = by_kind.get(kind)
    if other is None:
        return ("USAGE",), writing
    return other.writer, not other.reader
