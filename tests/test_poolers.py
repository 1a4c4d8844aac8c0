"""PgBouncer in transaction mode in front of the suite's server.

Saves (plain, coalesced, in ``store.transaction()``), loads and projections work through it with
``statement_cache_size=0`` (PgBouncer 1.18 has no prepared-statement support); LISTEN and
session locks go to ``listen_dsn``, and without one they are refused with
:class:`SessionUnavailableError` rather than silently never firing; poll-only streaming needs no
direct connection at all. Skipped when PgBouncer is not installed, unless
``EVENTUALI_PG_REQUIRE_PGBOUNCER=1`` (``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import asyncpg
import pytest
from helpers.cli_run import run_cli, run_cli_process
from helpers.domain import Counter
from helpers.pooler import REQUIRE_ENV, PgBouncer, find_pgbouncer

from eventuali_pg import (
    ConcurrencyError,
    EventStore,
    EventStreamer,
    SessionUnavailableError,
    Subscription,
)
from eventuali_pg.models import Event
from eventuali_pg.projections import Projection, ProjectionRunner, TransactionalProjection

WRITERS = 4


def _unavailable(message: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires the PgBouncer tests")
    pytest.skip(message)


@pytest.fixture(scope="module")
async def server(database_dsn: str) -> tuple[str, int, str, str]:
    """Host, port, user and database of the suite's server, as PgBouncer must reach them."""
    conn = await asyncpg.connect(database_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT inet_server_addr()::text AS host, inet_server_port() AS port, "
            "current_user AS usr, current_database() AS db"
        )
    finally:
        await conn.close()
    assert row is not None
    if row["host"] is None:
        _unavailable("the suite's server is on a Unix socket; PgBouncer needs it on TCP")
    return str(row["host"]).split("/")[0], int(row["port"]), row["usr"], row["db"]


@pytest.fixture(scope="module")
def bouncer(server: tuple[str, int, str, str]) -> Iterator[PgBouncer]:
    binary = find_pgbouncer()
    if binary is None:
        _unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    assert binary is not None
    host, port, user, _db = server
    pooler = PgBouncer(binary, host, port, user)
    try:
        pooler.start()
        yield pooler
    finally:
        pooler.stop()


@pytest.fixture
async def pooled(dsn: str, bouncer: PgBouncer, server: tuple[str, int, str, str]) -> str:
    """The test database through PgBouncer (tables emptied by ``dsn``)."""
    return bouncer.dsn(server[3])


async def _save_many(store: EventStore, saves: int) -> None:
    for number in range(saves):
        counter = Counter(id=str(uuid.uuid4()))
        for step in range(1 + number % 3):
            counter.increment(step + 1)
        await store.save(counter)


async def _save_in_transactions(store: EventStore, saves: int) -> None:
    for _ in range(saves):
        async with store.transaction() as tx:
            counter = Counter(id=str(uuid.uuid4()))
            counter.increment(5)
            counter.rename("in a transaction")
            await tx.save(counter)


class Positions(Projection):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def handle_event(self, event: Event) -> None:
        assert event.global_position is not None
        self.seen.append(event.global_position)


class PositionsTable(TransactionalProjection):
    """Records every handled position (a duplicate fails on the primary key)."""

    def __init__(self, table: str) -> None:
        self.table = table

    async def handle_event(self, event: Event, connection: Any) -> None:
        await self.handle_batch([event], connection)

    async def handle_batch(self, events: Sequence[Event], connection: Any) -> None:
        await connection.executemany(
            f"INSERT INTO {self.table} (position) VALUES ($1)",
            [(event.global_position,) for event in events],
        )


@pytest.fixture
async def seen_table(dsn: str) -> AsyncIterator[str]:
    table = f"public.seen_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"CREATE TABLE {table} (n bigserial PRIMARY KEY, position bigint NOT NULL UNIQUE)"
        )
        yield table
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def _positions_in(dsn: str, table: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(f"SELECT array_agg(position ORDER BY n) FROM {table}")
    finally:
        await conn.close()
    return list(value or [])


async def _drain(receiver: Any, head: int) -> list[int]:
    positions: list[int] = []
    async with asyncio.timeout(60):
        while not positions or positions[-1] < head:
            positions.append((await receiver.recv()).global_position)
    return positions


async def _activity(dsn: str, application_name: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                "AND datname = current_database()",
                application_name,
            )
        )
    finally:
        await conn.close()


async def test_listen_through_a_transaction_pooler_is_refused(pooled: str) -> None:
    with pytest.raises(SessionUnavailableError, match="listen_dsn"):
        await EventStore.create(pooled, streamer=EventStreamer(), statement_cache_size=0)
    # Session advisory locks (single-active projections) are refused the same way.
    async with await EventStore.create(pooled, notify=False, statement_cache_size=0) as store:
        runner = ProjectionRunner(store, Positions(), subscription_id="p", single_active=True)
        with pytest.raises(SessionUnavailableError, match="lease"):
            await runner.start()
        assert not runner.running


async def test_saves_projections_and_live_streaming_with_listen_dsn(
    dsn: str, pooled: str, seen_table: str
) -> None:
    streamer = EventStreamer(capacity=5000)
    async with await EventStore.create(
        pooled, listen_dsn=dsn, statement_cache_size=0, streamer=streamer
    ) as store:
        assert await _activity(dsn, "eventuali_pg_listener") == 1
        live = await streamer.subscribe(Subscription(id="live"))
        exactly_once = ProjectionRunner(
            store, PositionsTable(seen_table), subscription_id="table", batch_size=20
        )
        leased = Positions()
        single = ProjectionRunner(
            store, leased, subscription_id="leased", single_active=True, lease_poll_interval=0.1
        )
        await exactly_once.start()
        await single.start()
        try:
            await asyncio.gather(
                *(_save_many(store, 40) for _ in range(WRITERS)),
                _save_in_transactions(store, 20),
            )
            # A conflicting save is still refused through the pooler.
            counter = Counter(id="contested")
            counter.increment()
            await store.save(counter)
            stale = Counter(id="contested")
            stale.increment()
            with pytest.raises(ConcurrencyError):
                await store.save(stale)
            loaded = await store.load(Counter, "contested")
            assert loaded is not None and loaded.version == 1
            head = await store.get_global_position()
            assert await _drain(live, head) == list(range(1, head + 1))
            await exactly_once.wait_for_checkpoint(head, timeout=60)
            await single.wait_for_checkpoint(head, timeout=60)
            assert single.active
        finally:
            await exactly_once.stop()
            await single.stop()
        assert await _positions_in(dsn, seen_table) == list(range(1, head + 1))
        assert leased.seen == list(range(1, head + 1))
        assert (store.stats() is not None) and store.stats().notifications >= 1  # type: ignore[union-attr]


async def test_poll_only_needs_no_direct_connection(dsn: str, pooled: str, seen_table: str) -> None:
    streamer = EventStreamer(capacity=5000)
    async with await EventStore.create(
        pooled, notify=False, poll_interval=0.05, statement_cache_size=0, streamer=streamer
    ) as store:
        assert store.listener_pid is None
        assert await _activity(dsn, "eventuali_pg_listener") == 0
        live = await streamer.subscribe(Subscription(id="live"))
        runner = ProjectionRunner(
            store, PositionsTable(seen_table), subscription_id="table", batch_size=20
        )
        await runner.start()
        try:
            await asyncio.gather(
                *(_save_many(store, 40) for _ in range(WRITERS)),
                _save_in_transactions(store, 20),
            )
            head = await store.get_global_position()
            assert await _drain(live, head) == list(range(1, head + 1))
            await runner.wait_for_checkpoint(head, timeout=60)
            # A subscriber starting later catches up through the pooler too.
            late = await streamer.subscribe(Subscription(id="late"), from_position=0)
            assert await _drain(late, head) == list(range(1, head + 1))
        finally:
            await runner.stop()
        assert await _positions_in(dsn, seen_table) == list(range(1, head + 1))


async def test_cli_through_the_pooler(dsn: str, pooled: str) -> None:
    async with await EventStore.create(dsn, notify=False) as store:
        await _save_many(store, 5)  # positions 1..9
    # tail runs in a process of its own, as in test_cli_tail.py (it handles signals).
    refused = await run_cli_process(
        "tail", "--dsn", pooled, "--statement-cache-size", "0", "--from", "0", "--limit", "1"
    )
    assert refused.returncode != 0
    assert "--listen-dsn" in refused.stderr and "pooler" in refused.stderr
    tail = await run_cli_process(
        "tail", "--dsn", pooled, "--listen-dsn", dsn, "--statement-cache-size", "0",
        "--from", "0", "--limit", "9", "--json",
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    assert [row["global_position"] for row in tail.json_lines()] == list(range(1, 10))
    for command in (["events", "--json"], ["status", "--json"]):
        result = await run_cli(*command, "--dsn", pooled, "--statement-cache-size", "0")
        assert result.returncode == 0, result.stderr
    status = await run_cli("status", "--dsn", pooled, "--statement-cache-size", "0", "--json")
    assert status.json()["head"] == 9
