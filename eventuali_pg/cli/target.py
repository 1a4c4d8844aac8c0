"""Which database a command talks to: --dsn, the environment, or the embedded server.

With no DSN anywhere, commands start (or find) the embedded PostgreSQL server, say so in one
line on stderr, and migrate it. With an explicit DSN nothing is created behind the user's back:
a missing schema is a :class:`SchemaNotReadyError` naming ``eventuali-pg migrate``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._dsn import DSN_ENVIRONMENT_VARIABLES, describe_dsn
from .output import note

if TYPE_CHECKING:
    from .._db import Connection
    from ..store.event_store import EventStore
    from ..stream.streamer import EventStreamer

#: application_name of the CLI's own connections (so `status` can leave them out).
CLI_APPLICATION_NAME = "eventuali_pg_cli"


@dataclass(frozen=True)
class Target:
    """A resolved database: its DSN, and the data folder when it is the embedded server."""

    dsn: str
    schema: str
    embedded_data_dir: Path | None = None
    #: ``--listen-dsn``: a direct or session-mode URL for LISTEN when ``dsn`` is PgBouncer's.
    listen_dsn: str | None = None
    #: ``--replica-dsn`` (repeatable): hot standbys that serve catch-up reads.
    replica_dsns: tuple[str, ...] = ()
    #: ``--statement-cache-size`` (0 behind PgBouncer before 1.21); None: the library default.
    statement_cache_size: int | None = None

    @property
    def server_options(self) -> dict[str, Any]:
        """The EventStore options these settings give (only those that were set)."""
        options: dict[str, Any] = {}
        if self.listen_dsn is not None:
            options["listen_dsn"] = self.listen_dsn
        if self.replica_dsns:
            options["replica_dsn"] = list(self.replica_dsns)
        if self.statement_cache_size is not None:
            options["statement_cache_size"] = self.statement_cache_size
        return options

    @property
    def embedded(self) -> bool:
        """True when the DSN is the embedded server's."""
        return self.embedded_data_dir is not None

    def describe(self) -> str:
        """Where the database is, for messages (never the password)."""
        if self.embedded_data_dir is not None:
            return f"the embedded server (data in {self.embedded_data_dir})"
        return str(describe_dsn(self.dsn))


def explicit_dsn(args: Any) -> str | None:
    """``--dsn``, else ``EVENTUALI_PG_DSN``, else ``DATABASE_URL``; None when none is set."""
    dsn = getattr(args, "dsn", None)
    if dsn:
        return str(dsn)
    for name in DSN_ENVIRONMENT_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


async def resolve(args: Any, *, migrate_embedded: bool = True) -> Target:
    """The command's database; starts and (by default) migrates the embedded server if needed."""
    schema = str(args.schema)
    dsn = explicit_dsn(args)
    servers: dict[str, Any] = {
        "listen_dsn": getattr(args, "listen_dsn", None),
        "replica_dsns": tuple(getattr(args, "replica_dsn", None) or ()),
        "statement_cache_size": getattr(args, "statement_cache_size", None),
    }
    if dsn is not None:
        return Target(dsn, schema, **servers)
    from .. import embedded

    data_dir = embedded.default_data_dir()
    note(
        f"using the embedded PostgreSQL server, data in {data_dir} "
        "(use --dsn URL or EVENTUALI_PG_DSN to use another server)"
    )
    url = await asyncio.to_thread(embedded.start, data_dir)
    target = Target(url, schema, data_dir, **servers)
    if migrate_embedded:
        from ..migration import migrate

        await migrate(url, schema=schema)
    return target


async def open_store(
    target: Target, *, streamer: EventStreamer | None = None, **options: Any
) -> EventStore:
    """An EventStore on ``target`` (checks the schema), with a small pool."""
    from ..store.event_store import EventStore

    settings: dict[str, Any] = {
        "pool_min_size": 1,
        "pool_max_size": 4,
        **target.server_options,
        **options,
    }
    return await EventStore.create(target.dsn, schema=target.schema, streamer=streamer, **settings)


async def connect(target: Target) -> Connection:
    """One plain connection (application_name ``eventuali_pg_cli``)."""
    from .._db.connector import connect as connect_to

    return await connect_to(
        target.dsn,
        server_settings={"application_name": CLI_APPLICATION_NAME},
        statement_cache_size=target.statement_cache_size,
    )


async def check_schema(connection: Connection, schema: str) -> str:
    """The schema's revision; raise SchemaNotReadyError naming the command to run if not head."""
    from ..migration import check_schema_revision

    command = f"run `eventuali-pg migrate --schema {schema}` (with the same --dsn)"
    return await check_schema_revision(connection, schema, command=command)
