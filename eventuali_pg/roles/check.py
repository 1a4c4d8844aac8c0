"""Checking ahead that the connected role holds the writer's privileges an operation needs, so
it fails at once with the privilege named (a projection runner checks before it starts)."""

from __future__ import annotations

from .._db import Connection, privilege_errors
from .._dsn import describe_dsn
from ..errors import PermissionDeniedError
from .policy import table_privileges

__all__ = ["require_writer"]

_MISSING = """
SELECT t.name, t.privilege FROM unnest($2::text[], $3::text[]) WITH ORDINALITY
    AS t(name, privilege, ord)
WHERE NOT has_table_privilege(format('%I.%I', $1::text, t.name), t.privilege)
ORDER BY t.ord
"""


async def require_writer(
    connection: Connection, schema: str, tables: tuple[str, ...], *, dsn: str, action: str
) -> None:
    """Raise :class:`PermissionDeniedError` unless the connected role holds the writer's
    privileges (per the policy) on every table of ``tables``; ``action`` names what needs them
    ("running a projection")."""
    names: list[str] = []
    privileges: list[str] = []
    for table in tables:
        for privilege in table_privileges(table).writer:
            names.append(table)
            privileges.append(privilege)
    with privilege_errors(dsn, writing=False):
        rows = await connection.fetch(_MISSING, schema, names, privileges)
    if not rows:
        return
    table = str(rows[0]["name"])
    missing = tuple(str(row["privilege"]) for row in rows if row["name"] == table)
    others = sorted({str(row["name"]) for row in rows} - {table})
    role = describe_dsn(dsn).user or None
    who = f"role {role!r}" if role else "the connected role"
    also = f" (and privileges on {', '.join(others)})" if others else ""
    raise PermissionDeniedError(
        f"{who} lacks {', '.join(missing)} on table {schema}.{table}{also}, which {action} "
        "needs. Connect as the writer role, or have the schema's owner run `eventuali-pg grant "
        f"--writer {role or 'ROLE'} --schema {schema}` (a reader role can only read and "
        "stream); run the grant again after every migration",
        role=role,
        privileges=missing,
        object_type="table",
        object_name=table,
    )
