"""A partitioned events table (issue 13, item 3): partitions created ahead of need by writers in
several processes, per-aggregate concurrency and event id uniqueness without keys across
partitions, catch-up across dozens of partition boundaries, append-only partitions, the
conversion of an existing store, and the migration options.

The contract suites (dense order, append, outbox, retries, delivery) also run on a partitioned
table: see ``pytestmark = pytest.mark.store_layouts`` in those modules.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from helpers.cli_run import run_cli
from helpers.streaming_domain import Collector, Ticker, cancel_all, positions_and_ids, tickers

import eventuali_pg
from eventuali_pg import (
    ConcurrencyError,
    ConfigurationError,
    EventStore,
    EventStreamer,
    InvalidInputError,
    Subscription,
)
from eventuali_pg.migration import head_revision
from eventuali_pg.store.partitioning import conversion_sql

WRITER = Path(__file__).parent / "helpers" / "writer_process.py"
WAIT = 120.0


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def partitions(conn: asyncpg.Connection, schema: str) -> list[tuple[str, int, int]]:
    """(name, from, to) of each partition of ``schema.events``, in position order."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass",
        f"{schema}.events",
    )
    result = []
    for row in rows:
        # FOR VALUES FROM ('1') TO ('101')
        low, high = (int(part.split("'")[1]) for part in row["bound"].split(" TO "))
        result.append((row["relname"], low, high))
    return sorted(result, key=lambda p: p[1])


async def assert_dense_and_partitioned(conn: asyncpg.Connection, schema: str) -> int:
    """Positions 1..head each once, every event id in event_ids at its position, partitions
    contiguous from 1 and reaching beyond the head; returns the head."""
    head = await conn.fetchval(f"SELECT position FROM {schema}.global_sequence")
    stats = await conn.fetchrow(
        f"SELECT count(*) AS n, count(DISTINCT global_position) AS positions, "
        f"min(global_position) AS low, max(global_position) AS high FROM {schema}.events"
    )
    assert (stats["n"], stats["positions"]) == (head, head)
    if head:
        assert (stats["low"], stats["high"]) == (1, head)
    ids = await conn.fetchval(
        f"SELECT count(*) FROM {schema}.event_ids i JOIN {schema}.events e "
        "USING (event_id, global_position)"
    )
    assert ids == head == await conn.fetchval(f"SELECT count(*) FROM {schema}.event_ids")
    versions = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT aggregate_id, aggregate_version FROM {schema}.events "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    )
    assert versions == 0
    gaps = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT aggregate_id, max(aggregate_version) AS v, count(*) AS n "
        f"FROM {schema}.events GROUP BY 1) a JOIN {schema}.streams s USING (aggregate_id) "
        "WHERE a.v <> a.n OR s.version <> a.v"
    )
    assert gaps == 0
    parts = await partitions(conn, schema)
    assert parts[0][1] == 1
    assert all(a[2] == b[1] for a, b in itertools.pairwise(parts))
    assert parts[-1][2] > head
    return int(head)


# -- migration ---------------------------------------------------------------------------------


async def test_migrate_creates_partitions_ahead_and_keeps_the_size(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=1000)
    kind = await conn.fetchval("SELECT relkind::text FROM pg_class WHERE oid = $1::regclass",
                               f"{scratch_schema}.events")
    assert kind == "p"
    assert await partitions(conn, scratch_schema) == [
        ("events_p0", 1, 1001), ("events_p1", 1001, 2001), ("events_p2", 2001, 3001)
    ]
    await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=1000)  # again: nothing
    assert len(await partitions(conn, scratch_schema)) == 3
    with pytest.raises(ConfigurationError, match="already partitioned by 1000 events"):
        await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=500)
    for bad in (0, 5, "many"):
        with pytest.raises(ConfigurationError, match="partition size must be"):
            await eventuali_pg.migrate(dsn, schema=f"{scratch_schema}_x", partition_size=bad)  # type: ignore[arg-type]
    assert not await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL",
                                   f"{scratch_schema}_x")


async def test_cli_migrate_with_a_partition_size(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    result = await run_cli("migrate", "--dsn", dsn, "--schema", scratch_schema,
                           "--partition-size", "500")
    assert result.returncode == 0, result.stderr
    assert "partitioned by global_position, 500 per partition" in result.stdout
    assert (await partitions(conn, scratch_schema))[:2] == [
        ("events_p0", 1, 501), ("events_p1", 501, 1001)
    ]
    current = await run_cli("migrate", "current", "--partition-size", "500", "--dsn", dsn)
    assert current.returncode != 0 and "--partition-size" in current.stderr
    sql = await run_cli("migrate", "--sql", "--schema", "offline", "--partition-size", "500")
    assert sql.returncode == 0, sql.stderr
    assert "PARTITION BY RANGE (global_position)" in sql.stdout
    assert "size constant bigint := 500" in sql.stdout


# -- writers in several processes cross many boundaries ----------------------------------------


@pytest.mark.slow
async def test_writers_in_several_processes_cross_many_boundaries(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    # Partitions of 100 events: four processes, an outbox writer and contested aggregates in
    # this process cross a boundary every few saves, all creating partitions ahead as they go.
    await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=100)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WRITER), dsn, "--schema", scratch_schema, "--saves", "30",
            "--aggregates", "3", "--events", "4", "--name", f"p{i}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for i in range(4)
    ]
    conflicts = 0
    async with await EventStore.create(dsn, schema=scratch_schema, pool_max_size=6) as store:

        async def outbox_writer() -> None:
            for n in range(20):
                async with store.transaction() as tx:
                    for ticker in tickers(2, 3, writer=f"tx{n}"):
                        await tx.save(ticker)

        async def contested(n: int) -> None:
            # One new aggregate id created by four stores at once: one wins.
            nonlocal conflicts
            racers = [Ticker(id=f"race-{n}") for _ in range(4)]
            for racer in racers:
                racer.tick(n)
            outcomes = await asyncio.gather(*(s.save(r) for s, r in zip(racing, racers,
                                                                        strict=True)),
                                            return_exceptions=True)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(errors) == 3 and all(isinstance(e, ConcurrencyError) for e in errors)
            conflicts += len(errors)

        racing = [await EventStore.create(dsn, schema=scratch_schema, pool_max_size=1)
                  for _ in range(4)]
        try:
            await asyncio.gather(outbox_writer(), *(contested(n) for n in range(15)))
        finally:
            for other in racing:
                await other.close()
        outputs = [await asyncio.wait_for(p.communicate(), WAIT) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert json.loads(out)["events"] == 30 * 3 * 4
    assert conflicts == 15 * 3
    head = await assert_dense_and_partitioned(conn, scratch_schema)
    assert head == 4 * 30 * 3 * 4 + 20 * 2 * 3 + 15
    assert len(await partitions(conn, scratch_schema)) >= head // 100 + 1


# -- catch-up across dozens of boundaries ------------------------------------------------------


@pytest.mark.slow
async def test_catch_up_across_dozens_of_partition_boundaries(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    # Partitions of 1,000 events, 26,000+ events: a subscriber from position 0 joins midway,
    # pages through the history across every boundary, then follows live saves, in order; one
    # aggregate has an event in every save, so its history spans every partition.
    await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=1000)
    streamer = EventStreamer(capacity=500)
    long_lived = Ticker(id="long-lived")
    collector: Collector | None = None
    async with await EventStore.create(dsn, schema=scratch_schema, streamer=streamer) as store:
        try:
            for n in range(52):
                batch = tickers(49, 10, writer=f"w{n}", start=n * 490)
                long_lived.tick(n)
                await store.save_all([*batch, long_lived])
                if n == 20:
                    # More events in one save than the room kept ahead: the append makes room.
                    await store.save_all(tickers(50, 70, writer="big"))
                if n == 30:
                    collector = Collector(await streamer.subscribe(
                        Subscription(id="from-zero", from_position=0)))
            head = await assert_dense_and_partitioned(conn, scratch_schema)
            assert head == 52 * 491 + 3500
            assert len(await partitions(conn, scratch_schema)) >= 27
            assert collector is not None
            await collector.wait_for(head, timeout=WAIT)
            ids = await positions_and_ids(dsn, scratch_schema)
            assert collector.positions == list(range(1, head + 1))
            assert [i.event.event_id for i in collector.items] == [ids[p] for p in ids]

            loaded = await store.load(Ticker, "long-lived")
            assert loaded is not None and loaded.version == 52 and loaded.count == 52
            page = await store.load_events_from_position(9990, limit=20)
            assert [e.global_position for e in page] == list(range(9991, 10011))
            tail = await store.load_events_from_position(head - 5, aggregate_types="Ticker")
            assert [e.global_position for e in tail] == list(range(head - 4, head + 1))
        finally:
            if collector is not None:
                await cancel_all([collector])


# -- event ids and retries across partitions ---------------------------------------------------


async def test_event_ids_stay_unique_across_partitions(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=100)
    async with await EventStore.create(dsn, schema=scratch_schema) as store:
        first = Ticker(id="first")
        first.tick(1)
        event = first.get_uncommitted_events()[0]
        retry = first.model_copy(deep=True)  # what a caller holds after an in-doubt save
        await store.save(first)
        for n in range(5):  # several partitions later
            await store.save_all(tickers(10, 10, writer=f"fill{n}"))
        # The same save again (an in-doubt retry): already stored, nothing written.
        await store.save(retry)
        assert retry.get_uncommitted_events() == [] and retry.version == 1
        # A new event reusing a stored event's id, in another aggregate and partition.
        thief = Ticker(id="thief")
        thief.tick(2)
        stolen = thief.get_uncommitted_events()[0]
        stolen.event_id = event.event_id
        with pytest.raises(InvalidInputError, match="already stored"):
            await store.save(thief)
        assert await store.load(Ticker, "thief") is None
    await assert_dense_and_partitioned(conn, scratch_schema)
    plan = "\n".join(r[0] for r in await conn.fetch(
        "EXPLAIN " + store._sql.stored_events, [event.event_id]))
    assert "event_ids_pkey" in plan, plan


# -- append-only partitions --------------------------------------------------------------------


async def test_every_partition_is_append_only(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    await eventuali_pg.migrate(dsn, schema=scratch_schema, partition_size=100)
    async with await EventStore.create(dsn, schema=scratch_schema) as store:
        await store.save_all(tickers(30, 10))
    parts = await partitions(conn, scratch_schema)
    assert len(parts) >= 4
    s = scratch_schema
    refusals = [
        f"UPDATE {s}.events SET payload = '{{}}' WHERE global_position = 150",
        f"DELETE FROM {s}.events WHERE global_position = 250",
        f"TRUNCATE {s}.events",
        f"DELETE FROM {s}.event_ids",
        f"TRUNCATE {s}.event_ids",
    ]
    for part, low, _ in parts:
        refusals.append(f"TRUNCATE {s}.{part}")
        if low <= 300:  # row triggers fire on rows: partitions holding some
            refusals += [f"UPDATE {s}.{part} SET event_type = 'x'", f"DELETE FROM {s}.{part}"]
    for statement in refusals:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    assert await conn.fetchval(f"SELECT count(*) FROM {s}.events") == 300


# -- converting an existing store --------------------------------------------------------------


@pytest.mark.slow
async def test_an_existing_store_is_converted_in_place(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    s = scratch_schema
    await eventuali_pg.migrate(dsn, schema=s)
    old = Ticker(id="old")
    old.tick(0)
    old_event = old.get_uncommitted_events()[0]
    retry = old.model_copy(deep=True)
    async with await EventStore.create(dsn, schema=s) as store:
        await store.save(old)
        await store.save_all(tickers(100, 23))
    before = await conn.fetch(f"SELECT * FROM {s}.events ORDER BY global_position")
    assert len(before) == 2301
    # Built beforehand without blocking writers, the index the conversion needs is adopted.
    await conn.execute(
        f"CREATE INDEX CONCURRENTLY events_p0_aggregate_id_aggregate_version_idx "
        f"ON {s}.events (aggregate_id, aggregate_version)")

    # The documented conversion: migrate with a partition size (the same SQL as printed).
    await eventuali_pg.migrate(dsn, schema=s, partition_size=1000)
    assert await conn.fetch(f"SELECT * FROM {s}.events ORDER BY global_position") == before
    parts = await partitions(conn, s)
    assert parts[0] == ("events_p0", 1, 3001)  # the old table, up to the end of its partition
    assert [p[1] for p in parts[1:]] == [3001, 4001, 5001][: len(parts) - 1]
    assert await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", f"{s}.events_p0") == "r"
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS index, h.inhparent::regclass::text AS parent "
        "FROM pg_index i LEFT JOIN pg_inherits h ON h.inhrelid = i.indexrelid "
        "WHERE i.indrelid = $1::regclass ORDER BY 1", f"{s}.events_p0")
    assert [(r["index"].split(".")[1], r["parent"].split(".")[1]) for r in indexes] == [
        ("events_p0_aggregate_id_aggregate_version_idx", "events_aggregate_version_idx"),
        ("events_p0_aggregate_type_position_idx", "events_aggregate_type_position_idx"),
        ("events_p0_event_type_position_idx", "events_event_type_position_idx"),
        ("events_p0_pkey", "events_pkey"),
    ]

    async with await EventStore.create(dsn, schema=s) as store:
        await store.save(retry)  # an old save retried: recognised through event_ids
        assert retry.version == 1 and not retry.has_uncommitted_events()
        loaded = await store.load(Ticker, "old")
        assert loaded is not None and loaded.version == 1
        loaded.tick(1)
        await store.save(loaded)
        assert loaded.uncommitted_events == [] and loaded.version == 2
        await store.save_all(tickers(100, 20))  # into the new partitions
        reuse = Ticker(id="reuse")
        reuse.tick(3)
        reuse.get_uncommitted_events()[0].event_id = old_event.event_id
        with pytest.raises(InvalidInputError, match="already stored"):
            await store.save(reuse)
    head = await assert_dense_and_partitioned(conn, s)
    assert head == 2301 + 1 + 2000
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await conn.execute(f"TRUNCATE {s}.events_p0")

    # Back to an ordinary table (the migration's downgrade), and forward again.
    await eventuali_pg.downgrade(dsn, schema=s, revision="0007_projection_versions")
    assert await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", f"{s}.events") == "r"
    assert await conn.fetchval(f"SELECT count(*) FROM {s}.events") == head
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(
            f"INSERT INTO {s}.events SELECT {head} + 1, event_id, aggregate_id, aggregate_type, "
            "aggregate_version + 100, event_type, event_version, payload, causation_id, "
            "correlation_id, user_id, metadata, occurred_at, recorded_at "
            f"FROM {s}.events WHERE global_position = 1")
    await eventuali_pg.migrate(dsn, schema=s)
    assert await eventuali_pg.migration.current_revision(dsn, schema=s) == head_revision()
    assert await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::regclass", f"{s}.events") == "r"


@pytest.fixture
async def app_role(conn: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"eventuali_test_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        await conn.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")


async def test_a_role_with_only_dml_privileges_gets_its_partitions(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection, app_role: str
) -> None:
    # Partitions are created by a SECURITY DEFINER function: the application's role needs no
    # right to create tables or to own events.
    s = scratch_schema
    await eventuali_pg.migrate(dsn, schema=s, partition_size=100)
    await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {app_role}; "
                       f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {s} TO {app_role}; "
                       f"GRANT DELETE ON {s}.pending_events TO {app_role}; "
                       f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {app_role}")
    parts = urlsplit(dsn)
    role_dsn = urlunsplit((parts.scheme, f"{app_role}@{parts.netloc.rsplit('@', 1)[-1]}",
                           parts.path, parts.query, ""))
    async with await EventStore.create(role_dsn, schema=s) as store:
        for n in range(8):
            await store.save_all(tickers(10, 10, writer=f"dml{n}"))
            async with store.transaction() as tx:
                await tx.save(tickers(1, 20, writer=f"tx{n}")[0])
    head = await assert_dense_and_partitioned(conn, s)
    assert head == 8 * 120 and len(await partitions(conn, s)) >= 10
    owners = await conn.fetch(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass", f"{s}.events")
    assert [r["owner"] for r in owners] == [await conn.fetchval("SELECT current_user")]


def test_the_conversion_is_one_printable_block() -> None:
    text = conversion_sql("eventuali", 1_000_000)
    assert text.strip().startswith("DO $convert$") and text.strip().endswith("$convert$")
    assert "size constant bigint := 1000000" in text
    with pytest.raises(ValueError, match="partition size"):
        conversion_sql("eventuali", 3)


# -- reads prune partitions and use their indexes ----------------------------------------------


async def test_reads_prune_partitions_and_use_their_indexes(
    dsn: str, scratch_schema: str, conn: asyncpg.Connection
) -> None:
    s = scratch_schema
    await eventuali_pg.migrate(dsn, schema=s, partition_size=2000)
    async with await EventStore.create(dsn, schema=s) as store:
        for n in range(4):
            await store.save_all(tickers(250, 8, writer=f"w{n}"))
        await conn.execute(f"ANALYZE {s}.events")
        after = store._sql.read_from_position(
            aggregate_types=False, event_types=False, upper_bound=False, limit=True)
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + after, 6500, 100))
        assert "events_p3" in plan and "events_p0" not in plan and "events_p1" not in plan, plan
        assert "Sort" not in plan, plan  # partitions in position order: no sort of the rest
        by_type = store._sql.read_from_position(
            aggregate_types=True, event_types=False, upper_bound=False, limit=True)
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + by_type, 0, ["Rare"], 10))
        assert "aggregate_type_global_position_idx" in plan, plan
        late = tickers(1, 3, writer="late")[0]
        await store.save(late)  # its first event in the fifth partition
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF) " + store._sql.load_aggregate, late.id, 0))
        assert "aggregate_id_aggregate_version_idx" in plan, plan
        # The partitions before its first event are skipped at run time (first_position).
        for k in range(4):
            assert f"on events_p{k} events_{k + 1} (never executed)" in plan, plan
        assert "on events_p4 events_5 (actual" in plan, plan
        assert [e.aggregate_version for e in await store.load_events(late.id)] == [1, 2, 3]

