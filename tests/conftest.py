"""Test harness: one real PostgreSQL server and one fresh, migrated database per session.

Fixtures:

* ``pg_server`` (session): the :class:`_server.Server` in use (``kind`` is env/container/embedded).
* ``pg_admin_dsn`` (session, str): admin DSN of that server (its ``postgres`` database).
* ``database_dsn`` (session, str): DSN of this session's own database ``eventuali_test_<hex>``,
  created and migrated once, dropped at the end.
* ``dsn`` (function, str): the same DSN, with every store table emptied before the test and the
  ``global_sequence`` row reset to position 0. In a module marked ``store_layouts`` every test
  taking ``dsn`` runs twice: on that database and on ``partitioned_database_dsn`` (ids
  ``[plain]`` and ``[partitioned]``); ``EVENTUALI_PG_TEST_LAYOUT=partitioned`` makes every
  other test use the partitioned one.
* ``partitioned_database_dsn`` (session, str): a second database, migrated with a partitioned
  events table of :data:`TEST_PARTITION_SIZE` events per partition (created on first use).
* ``embedded_server`` (function, :class:`_server.EmbeddedServer`): the embedded server when the
  suite started it itself (skips otherwise); it can be stopped, killed and started again on the
  same data folder and socket, and is started again after the test if the test left it down.
* ``collect_loop_errors`` (function): an async function returning the loop errors reported so
  far and forgetting them, for tests that provoke such errors on purpose.

Every test also fails if an asyncio task or callback raised an exception nobody retrieved, or a
task was garbage-collected while still pending (both reach ``loop.call_exception_handler``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from _server import EmbeddedServer, Server, create_database, drop_database, find_server

import eventuali_pg
from eventuali_pg.store.schema import table_names

STORE_SCHEMA = "eventuali"

#: Events per partition of the partitioned test database (small: tests cross many boundaries).
TEST_PARTITION_SIZE = 100

LAYOUTS = ("plain", "partitioned")

# ----------------------------------------------------------------------------------------------
# Unhandled errors inside the event loop fail the test they happen in.

_loop_errors: list[dict[str, Any]] = []


def _describe(context: dict[str, Any]) -> str:
    parts = [str(context.get("message", "unhandled error in the event loop"))]
    for key in ("exception", "task", "future", "handle"):
        if key in context:
            parts.append(f"{key}: {context[key]!r}")
    return "\n    ".join(parts)


async def _collect_loop_errors() -> list[dict[str, Any]]:
    # Destroyed pending tasks are only reported when collected; reports made with call_soon
    # need one more turn of the loop.
    gc.collect()
    await asyncio.sleep(0)
    errors = list(_loop_errors)
    _loop_errors.clear()
    return errors


@pytest.fixture(scope="session", autouse=True)
async def _loop_exception_handler() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        _loop_errors.append(context)
        loop.default_exception_handler(context)  # still logged, with its traceback

    loop.set_exception_handler(handler)
    yield
    errors = await _collect_loop_errors()
    loop.set_exception_handler(previous)
    if errors:
        pytest.fail(
            "unhandled errors in the event loop after the last test:\n  "
            + "\n  ".join(_describe(c) for c in errors),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
async def _fail_on_loop_errors(_loop_exception_handler: None) -> AsyncIterator[None]:
    _loop_errors.clear()
    yield
    errors = await _collect_loop_errors()
    if errors:
        pytest.fail(
            "unhandled errors in the event loop during this test:\n  "
            + "\n  ".join(_describe(c) for c in errors),
            pytrace=False,
        )


@pytest.fixture
def collect_loop_errors() -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """An async function returning (and forgetting) the loop errors reported so far."""
    return _collect_loop_errors


# ----------------------------------------------------------------------------------------------
# The server and the session's database.


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    server = find_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_admin_dsn(pg_server: Server) -> str:
    return pg_server.admin_dsn


@pytest.fixture
def embedded_server(pg_server: Server) -> Iterator[EmbeddedServer]:
    if pg_server.embedded is None:
        pytest.skip(f"needs the suite's own embedded server (this run uses a {pg_server.kind})")
    yield pg_server.embedded
    if not pg_server.embedded.running:
        pg_server.embedded.start()


@pytest.fixture(scope="session")
async def database_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"eventuali_test_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(pg_admin_dsn, name)
    try:
        await eventuali_pg.migrate(dsn, schema=STORE_SCHEMA)
        yield dsn
    finally:
        await drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="session")
async def partitioned_database_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"eventuali_test_{uuid.uuid4().hex[:12]}_partitioned"
    dsn = await create_database(pg_admin_dsn, name)
    try:
        await eventuali_pg.migrate(
            dsn, schema=STORE_SCHEMA, partition_size=TEST_PARTITION_SIZE
        )
        yield dsn
    finally:
        await drop_database(pg_admin_dsn, name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dsn" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "store_layouts"
    ):
        metafunc.parametrize("store_layout", LAYOUTS, indirect=True)


@pytest.fixture
def store_layout(request: pytest.FixtureRequest) -> str:
    """``plain`` or ``partitioned``: the events table of the test's store."""
    layout = getattr(request, "param", None) or os.environ.get(
        "EVENTUALI_PG_TEST_LAYOUT", "plain"
    )
    assert layout in LAYOUTS, f"EVENTUALI_PG_TEST_LAYOUT must be one of {LAYOUTS}"
    return str(layout)


@pytest.fixture
def store_database(request: pytest.FixtureRequest, store_layout: str) -> str:
    # A plain fixture, so that the partitioned database is only created when a test uses it.
    name = "partitioned_database_dsn" if store_layout == "partitioned" else "database_dsn"
    return str(request.getfixturevalue(name))


def _truncate_sql() -> str:
    # event_partitioning is the partitioned table's bookkeeping: its partitions stay.
    tables = ", ".join(
        ".".join(f'"{part}"' for part in name.split("."))
        for name in table_names(STORE_SCHEMA)
        if not name.endswith(".event_partitioning")
    )
    return (
        "SET LOCAL eventuali_pg.maintenance = 'on'; "  # history is append-only otherwise
        f"TRUNCATE {tables} RESTART IDENTITY; "
        f'INSERT INTO "{STORE_SCHEMA}".global_sequence (id, position) VALUES (1, 0);'
    )


@pytest.fixture
async def dsn(store_database: str) -> AsyncIterator[str]:
    conn = await asyncpg.connect(store_database)
    try:
        await conn.execute(_truncate_sql())
    finally:
        await conn.close()
    yield store_database


@pytest.fixture
async def scratch_schema(dsn: str) -> AsyncIterator[str]:
    """The name of a store schema of the test's own (not created), dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()

