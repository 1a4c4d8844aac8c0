"""A writer and a reader role of the test's own (unique names, dropped afterwards), granted
with :func:`eventuali_pg.roles.grant_roles` by the owner of the test database's schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from eventuali_pg.roles import grant_roles


def as_role(dsn: str, name: str) -> str:
    """``dsn`` with user ``name`` (the test server trusts local connections)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{name}@{host}", parts.path, parts.query, ""))


@dataclass(frozen=True)
class Roles:
    """The two roles and a DSN connecting as each."""

    writer: str
    reader: str
    writer_dsn: str
    reader_dsn: str


@contextlib.asynccontextmanager
async def made_roles(owner_dsn: str, *, grant: bool = True, schema: str = "eventuali"
                     ) -> AsyncIterator[Roles]:
    """Create two LOGIN roles (granted as writer and reader on ``schema`` unless ``grant`` is
    False); revoke everything and drop them afterwards."""
    suffix = uuid.uuid4().hex[:10]
    writer, reader = f"test_writer_{suffix}", f"test_reader_{suffix}"
    admin = await asyncpg.connect(owner_dsn)
    try:
        await admin.execute(f"CREATE ROLE {writer} LOGIN; CREATE ROLE {reader} LOGIN")
        try:
            if grant:
                await grant_roles(owner_dsn, writer=writer, reader=reader, schema=schema)
            yield Roles(writer, reader, as_role(owner_dsn, writer), as_role(owner_dsn, reader))
        finally:
            # Their connections (a store a failed test left open) would block DROP ROLE.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = ANY($1::text[])",
                [writer, reader],
            )
            await admin.execute(f"DROP OWNED BY {writer}, {reader}")
            await admin.execute(f"DROP ROLE {writer}; DROP ROLE {reader}")
    finally:
        await admin.close()
