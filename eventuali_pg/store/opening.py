"""Opening a store: options checked, a pool connected, the schema revision checked.

:meth:`EventStore.create` wires what this returns; nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._db import Connector, Pool, database_errors
from .._dsn import resolve_dsn
from ..errors import ConfigurationError
from ..upcasting import check_upcasters
from .inline import InlineHandler
from .options import StoreOptions
from .revision import is_current


def checked_inline_projections(value: object) -> list[InlineHandler]:
    """``inline_projections`` as a list, or a :class:`ConfigurationError` before connecting."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(
            "inline_projections must be an iterable of TransactionalProjection objects "
            f"(or empty), got {value!r}"
        )
    return list(value)


async def open_pool(
    dsn: str | None, options: dict[str, Any]
) -> tuple[Connector, Pool, StoreOptions]:
    """The connector, an open pool and the settings of a store on ``dsn`` whose schema is at
    the revision this library needs (the pool is closed again when it is not)."""
    if "connection_string" in options and dsn is None:  # upstream eventuali's keyword
        dsn = options.pop("connection_string")
    settings = StoreOptions.from_keywords(**options)
    check_upcasters()  # incomplete chains fail here, not deep inside a subscriber
    connector = Connector(
        resolve_dsn(dsn),
        connect_timeout=float(settings.connect_timeout),
        statement_cache_size=settings.statement_cache_size,
        listen_dsn=settings.listen_dsn,
    )
    pool = await connector.pool(min_size=settings.pool_min_size, max_size=settings.pool_max_size)
    try:
        with database_errors(connector.dsn):
            await _check_schema(pool, settings.schema)
    except BaseException:
        await pool.close()
        raise
    return connector, pool, settings


async def _check_schema(pool: Pool, schema: str) -> None:
    async with pool.acquire() as conn:
        if await is_current(conn, schema):
            return  # alembic is imported only when there is something to explain
    from ..migration import check_schema_revision

    command = (
        f"run `eventuali-pg migrate --schema {schema}` (or `await eventuali_pg.migrate(dsn, "
        f"schema={schema!r})`, or `alembic upgrade head` in the eventuali-pg checkout)"
    )
    async with pool.acquire() as conn:
        await check_schema_revision(conn, schema, command=command)
