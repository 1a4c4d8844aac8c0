"""Elastic consumer groups in one process: members join and leave while writers append, each
member reads only its partitions, and the read model stays exact (issue 13 item 4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from helpers.cli_run import run_cli
from helpers.projection_domain import (
    CountingProjection,
    DeliveryProjection,
    append_more,
    create_read_model,
    seed,
)

from eventuali_pg import (
    ConfigurationError,
    ElasticGroup,
    EventStore,
    InvalidInputError,
    ProjectionRunner,
)
from eventuali_pg.projections import reset_group, share_partition
from eventuali_pg.projections.share import ShareReader
from eventuali_pg.projections.sql import SHARE_HASH

WAIT = 60.0
SUBSCRIPTION = "elastic"


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    await create_read_model(dsn)
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        yield store


def member(store: EventStore, name: str, **options: Any) -> ProjectionRunner:
    group = ElasticGroup(member_id=name, lease_seconds=2.0, heartbeat_seconds=0.2)
    return ProjectionRunner(
        store,
        CountingProjection(name),
        subscription_id=SUBSCRIPTION,
        group=group,
        batch_size=20,
        max_attempts=1,
        **options,
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not await check():  # noqa: ASYNC110 (state across tasks and the database)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT:g}s: {what}") from None


def shares(runners: list[ProjectionRunner]) -> list[int]:
    return sorted(len(r.owned_partitions) for r in runners)


async def assert_exact(store: EventStore, head: int) -> None:
    async with store.connection() as conn:
        positions = [r[0] for r in await conn.fetch("SELECT position FROM public.proj_applied")]
        assert sorted(positions) == list(range(1, head + 1))  # every event once
        rows = await conn.fetch(
            "SELECT aggregate_id, version FROM public.proj_applied ORDER BY seq"
        )
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM public.proj_counters c JOIN (SELECT aggregate_id, "
            "max(aggregate_version) AS v, count(*) AS n FROM eventuali.events "
            "GROUP BY aggregate_id) e USING (aggregate_id) "
            "WHERE c.n <> e.n OR c.last_version <> e.v"
        )
        parked = await conn.fetchval("SELECT count(*) FROM eventuali.dead_letters")
    assert mismatched == 0
    assert parked == 0  # an event out of order would have been parked (OrderViolation)
    last: dict[str, int] = {}
    for row in rows:  # commit order: each aggregate's versions 1, 2, 3, ...
        assert row["version"] == last.get(row["aggregate_id"], 0) + 1
        last[row["aggregate_id"]] = row["version"]


async def test_partition_hash_is_the_same_in_sql_and_python(dsn: str) -> None:
    ids = [f"agg-{i}" for i in range(500)] + ["", "ü-ñ-日本", "x" * 300]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT aggregate_id, {SHARE_HASH} % 16 AS p, {SHARE_HASH} % 7 AS q "
            "FROM unnest($1::text[]) AS aggregate_id",
            ids,
        )
    finally:
        await conn.close()
    assert {r["aggregate_id"]: (r["p"], r["q"]) for r in rows} == {
        i: (share_partition(i, 16), share_partition(i, 7)) for i in ids
    }
    assert len({share_partition(i) for i in ids}) == 16


async def test_a_share_read_returns_only_its_partitions(store: EventStore) -> None:
    await seed(store, aggregates=50, rounds=3)
    head = await store.get_global_position()
    reader = ShareReader(store, 16)
    items, covered, more = await reader.page(0, [0, 5], 1000)
    assert (covered, more) == (head, False)
    assert items and {share_partition(i.event.aggregate_id) for i in items} <= {0, 5}
    async with store.connection() as conn:
        expected = await conn.fetchval(
            f"SELECT count(*) FROM eventuali.events WHERE {SHARE_HASH} % 16 IN (0, 5)"
        )
    assert len(items) == expected
    full, upto, more = await reader.page(0, [0, 5], 3)
    assert [i.global_position for i in full] == [i.global_position for i in items[:3]]
    assert (upto, more) == (full[-1].global_position, True)  # a full page: up to its last
    # One read looks at a bounded window (here 1 * 16 / 1 = 16 positions) and says so.
    window, upto, more = await reader.page(0, [3], 1)
    assert upto <= 16 and more
    assert all(i.global_position <= upto for i in window)
    position, seen = 0, []
    while True:
        page, position, more = await reader.page(position, [0, 5], 7)
        seen += [i.global_position for i in page]
        if not more:
            break
    assert position == head
    assert seen == [i.global_position for i in items]  # paging loses and repeats nothing


async def test_members_join_and_leave_while_writers_append(
    store: EventStore, dsn: str
) -> None:
    ids = await seed(store, aggregates=60, rounds=3)
    stop_writing = asyncio.Event()

    async def write() -> None:
        while not stop_writing.is_set():
            await append_more(store, ids[:30], rounds=1)
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(write())
    runners = [member(store, "a")]
    try:
        await runners[0].start()
        await eventually(lambda: _owned(runners, [16]), "member a owns all 16 partitions")
        for name in ("b", "c"):
            runners.append(member(store, name))
            await runners[-1].start()
        await eventually(lambda: _owned(runners, [5, 5, 6]), "a, b, c share 6/5/5")

        report = json.loads((await run_cli("status", "--dsn", dsn, "--json")).stdout)
        (group,) = report["consumer_groups"]
        assert group["subscription_id"] == SUBSCRIPTION and group["partitions"] == 16
        shown = {m["member_id"]: m["partitions"] for m in group["members"]}
        assert shown == {r.stats().checkpoint_id.split("#member-")[1]: r.owned_partitions
                         for r in runners}
        assert all(m["lag"] is not None and m["alive"] for m in group["members"])
        text = (await run_cli("status", "--dsn", dsn)).stdout
        assert "consumer group elastic (16 partitions)" in text

        first = runners.pop(0)
        await first.stop()  # a clean leave: its partitions move at once
        await eventually(lambda: _owned(runners, [8, 8]), "b and c share 8/8")
        stop_writing.set()
        await writer
        head = await store.get_global_position()
        await eventually(lambda: _applied(store, head), f"all {head} events applied")
    finally:
        stop_writing.set()
        with contextlib.suppress(BaseException):
            await writer
        for runner in runners:
            await runner.stop()
    await assert_exact(store, head)
    handled_by = await _workers(store)
    assert handled_by == {"a", "b", "c"}


async def _owned(runners: list[ProjectionRunner], expected: list[int]) -> bool:
    return shares(runners) == expected and all(r.active for r in runners)


async def _applied(store: EventStore, head: int) -> bool:
    async with store.connection() as conn:
        return bool(await conn.fetchval("SELECT count(*) FROM public.proj_applied") >= head)


async def _workers(store: EventStore) -> set[str]:
    async with store.connection() as conn:
        return {r[0] for r in await conn.fetch("SELECT DISTINCT worker FROM public.proj_applied")}


async def test_at_least_once_rebalances_cleanly_without_repeats(
    store: EventStore, dsn: str
) -> None:
    """A member writes its partitions' checkpoints before it releases them, so a clean
    rebalance repeats nothing even with a checkpoint interval longer than the test."""
    ids = await seed(store, aggregates=40, rounds=2)
    projections = {name: DeliveryProjection(dsn, name) for name in ("a", "b", "c")}
    runners: dict[str, ProjectionRunner] = {}

    def start(name: str) -> ProjectionRunner:
        runners[name] = ProjectionRunner(
            store,
            projections[name],
            subscription_id="elastic-alo",
            group=ElasticGroup(member_id=name, lease_seconds=2.0, heartbeat_seconds=0.2),
            batch_size=10,
            checkpoint_every=100_000,
            checkpoint_interval=3600,
        )
        return runners[name]

    try:
        await start("a").start()
        await append_more(store, ids, rounds=1)
        for name in ("b", "c"):
            await start(name).start()
            await append_more(store, ids, rounds=1)
        await eventually(
            lambda: _owned(list(runners.values()), [5, 5, 6]), "a, b, c share 6/5/5"
        )

        async def delivered() -> bool:
            head = await store.get_global_position()
            async with store.connection() as conn:
                n = await conn.fetchval("SELECT count(DISTINCT position) FROM proj_deliveries")
            return bool(n == head)

        await append_more(store, ids, rounds=1)  # b's share of it goes to b
        await eventually(delivered, "every event delivered (3 members)")
        await runners.pop("b").stop()
        await append_more(store, ids, rounds=1)
        await eventually(lambda: _owned(list(runners.values()), [8, 8]), "a and c share 8/8")
        await eventually(delivered, "every event delivered (2 members)")
        head = await store.get_global_position()
    finally:
        for runner in runners.values():
            await runner.stop()
        for projection in projections.values():
            await projection.close()
    async with store.connection() as conn:
        rows = await conn.fetch("SELECT position, worker FROM public.proj_deliveries")
    assert sorted(r["position"] for r in rows) == list(range(1, head + 1))  # no repeat
    assert {r["worker"] for r in rows} == {"a", "b", "c"}


async def test_members_that_stall_past_their_leases_recover_exactly(store: EventStore) -> None:
    """The whole process stalls (a VM pause) longer than the leases: every lease runs out,
    the members find each other's partitions free or taken, rebalance, and nothing is applied
    twice or lost."""
    ids = await seed(store, aggregates=40, rounds=2)
    runners = [member(store, "s1"), member(store, "s2")]
    try:
        for runner in runners:
            await runner.start()
        await eventually(lambda: _owned(runners, [8, 8]), "s1 and s2 share 8/8")
        for _ in range(2):
            await append_more(store, ids, rounds=1)
            time.sleep(2.5)  # noqa: ASYNC251 (the stall under test: nothing may run)
        await append_more(store, ids, rounds=1)
        head = await store.get_global_position()
        await eventually(lambda: _applied(store, head), f"all {head} events applied")
        await eventually(lambda: _owned(runners, [8, 8]), "s1 and s2 share 8/8 again")
    finally:
        for runner in runners:
            await runner.stop()
    await assert_exact(store, head)


async def test_a_member_whose_partitions_were_taken_is_fenced(store: EventStore) -> None:
    """A deposed owner's batch transaction is refused: the fence sees the partition moved."""
    await seed(store, aggregates=10, rounds=1)
    runner = member(store, "old")
    membership = runner._membership
    assert membership is not None
    await membership.join()
    owned = await membership.rebalance(frozenset())
    assert owned == frozenset(range(16))
    async with store.connection() as conn:  # another member claims partition 3 meanwhile
        await conn.execute(
            "UPDATE eventuali.group_partitions SET owner = 'new' WHERE partition = 3"
        )
    async with store.connection() as conn, conn.transaction():
        with pytest.raises(Exception, match=r"partitions \[3\] moved"):
            await membership.fence(conn, owned)
    await membership.leave()


async def test_misconfigured_elastic_groups_are_refused(store: EventStore) -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        ElasticGroup(lease_seconds=1.0, heartbeat_seconds=1.0)
    with pytest.raises(InvalidInputError, match="partitions"):
        ElasticGroup(partitions=0)
    with pytest.raises(InvalidInputError, match="from 1 to 4096"):
        ElasticGroup(partitions=2**40)  # a member would list every partition: never starts
    with pytest.raises(ConfigurationError, match="single_active"):
        member(store, "x", single_active=True)
    first = member(store, "p16")
    await first.start()
    try:
        other = ProjectionRunner(
            store,
            CountingProjection("p8"),
            subscription_id=SUBSCRIPTION,
            group=ElasticGroup(partitions=8, member_id="p8"),
        )
        with pytest.raises(ConfigurationError, match="same number"):
            await other.start()
        assert not other.running
        with pytest.raises(ConfigurationError, match="elastic"):
            await first.reset()
        with pytest.raises(ConfigurationError, match="live members"):
            await reset_group(
                store, CountingProjection(), subscription_id=SUBSCRIPTION, elastic=True
            )
    finally:
        await first.stop()
    await reset_group(store, CountingProjection(), subscription_id=SUBSCRIPTION, elastic=True)


class ForgetRecording(CountingProjection):
    """Records every ``on_forget`` call with the member that got it."""

    def __init__(self, worker: str, forgotten: list[tuple[str, str]]) -> None:
        super().__init__(worker)
        self.forgotten = forgotten

    async def on_forget(self, subject_id: str, connection: Any) -> None:
        self.forgotten.append((self.worker, subject_id))


async def test_every_member_hears_a_forget_whatever_partitions_it_owns(
    store: EventStore,
) -> None:
    # The forget event belongs to one partition, yet each member's read model may hold the
    # subject's data: every member's on_forget runs, after the events before it.
    forgotten: list[tuple[str, str]] = []
    names = ["f1", "f2", "f3"]
    runners = [
        ProjectionRunner(
            store,
            ForgetRecording(name, forgotten),
            subscription_id=SUBSCRIPTION,
            group=ElasticGroup(member_id=name, lease_seconds=2.0, heartbeat_seconds=0.2),
            batch_size=20,
        )
        for name in names
    ]
    await seed(store, aggregates=12, rounds=2)
    for runner in runners:
        await runner.start()
    try:
        await eventually(
            lambda: _true(shares(runners) == [5, 5, 6]), "the partitions dealt to three members"
        )
        position = await store.forget("subject-7")
        assert position is not None
        await eventually(
            lambda: _true(sorted(forgotten) == [(n, "subject-7") for n in names]),
            f"on_forget in every member (got {forgotten})",
        )
    finally:
        for runner in runners:
            await runner.stop()


async def _true(value: bool) -> bool:
    return value
