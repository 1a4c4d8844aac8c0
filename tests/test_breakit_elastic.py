"""Elastic consumer groups at the limits (real PostgreSQL): the partition hash agrees between
Python and SQL for any text id, and a group's settings are refused before anything is written
when the database could not store them (or the member could not hold them in memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from helpers.projection_domain import append_more, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventuali_pg import ElasticGroup, Event, EventStore, InvalidInputError, ProjectionRunner
from eventuali_pg.projections import DeadLetterQueue, Projection, share_partition
from eventuali_pg.projections.elastic import MAX_PARTITIONS
from eventuali_pg.projections.sql import SHARE_HASH

#: Text PostgreSQL can store: no NUL, no lone surrogate.
STORABLE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=300,
)


async def test_the_partition_hash_agrees_with_sql_for_any_text(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            ids=st.lists(STORABLE, min_size=1, max_size=20), partitions=st.integers(1, 2**31 - 1)
        )
        def check(ids: list[str], partitions: int) -> None:
            found.append((ids, partitions))

        found: list[tuple[list[str], int]] = []
        check()
        for ids, partitions in found:
            rows = await conn.fetch(
                f"SELECT {SHARE_HASH} % $2 AS p FROM unnest($1::text[]) WITH ORDINALITY "
                "AS t(aggregate_id, n) ORDER BY n",
                ids,
                partitions,
            )
            assert [r["p"] for r in rows] == [share_partition(i, partitions) for i in ids]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "options",
    [
        {"partitions": MAX_PARTITIONS + 1},
        {"partitions": 2**31},
        {"member_id": "a\x00b"},
        {"member_id": "a\ud800"},
    ],
)
def test_settings_the_group_cannot_hold_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        ElasticGroup(**options)  # type: ignore[arg-type]


class Idle(Projection):
    async def handle_event(self, event: object) -> None:
        return None


async def test_the_most_partitions_allowed_work(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        group = ElasticGroup(
            partitions=MAX_PARTITIONS, member_id="m", lease_seconds=2, heartbeat_seconds=0.2
        )
        runner = ProjectionRunner(store, Idle(), subscription_id="wide", group=group)
        await runner.start()
        try:
            async with asyncio.timeout(60):  # a hang detector only
                while len(runner.owned_partitions) < MAX_PARTITIONS:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            async with store.connection() as conn:
                rows = await conn.fetchval(
                    "SELECT count(*) FROM eventuali.group_partitions WHERE owner = 'm'"
                )
            assert rows == MAX_PARTITIONS
        finally:
            await runner.stop()


WAIT = 60.0  # seconds: a hang detector only


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not await check():  # noqa: ASYNC110 (state across tasks and the database)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT:g}s: {what}") from None


class Recording(Projection):
    """At-least-once, in memory; raises ``failures[aggregate_id]`` (an exception instance)
    for the events of that aggregate."""

    def __init__(self, failures: dict[str, BaseException] | None = None) -> None:
        self.seen: list[int] = []
        self.failures = failures or {}

    async def handle_event(self, event: Event) -> None:
        failure = self.failures.get(event.aggregate_id)
        if failure is not None:
            raise failure
        assert event.global_position is not None
        self.seen.append(event.global_position)


def elastic(
    store: EventStore, projection: Projection, name: str, **options: Any
) -> ProjectionRunner:
    return ProjectionRunner(
        store,
        projection,
        subscription_id="breakit",
        group=ElasticGroup(member_id=name, lease_seconds=2.0, heartbeat_seconds=0.2),
        batch_size=10,
        **options,
    )


async def test_two_members_share_a_pool_of_one_connection(dsn: str) -> None:
    async with await EventStore.create(
        dsn, pool_min_size=1, pool_max_size=1, poll_interval=0.2
    ) as store:
        ids = await seed(store, aggregates=30, rounds=2)
        projections = [Recording(), Recording()]
        runners = [elastic(store, p, f"m{i}") for i, p in enumerate(projections)]
        try:
            for runner in runners:
                await runner.start()
            await append_more(store, ids, rounds=1)

            async def delivered() -> bool:
                head = await store.get_global_position()
                seen = {p for projection in projections for p in projection.seen}
                return seen == set(range(1, head + 1))

            async def shared() -> bool:
                return sorted(len(r.owned_partitions) for r in runners) == [8, 8]

            await eventually(shared, "the two members share 8/8")
            await append_more(store, ids, rounds=1)
            await eventually(delivered, "every event delivered through one connection")
        finally:
            async with asyncio.timeout(WAIT):
                for runner in runners:
                    await runner.stop()
        assert all(projection.seen for projection in projections)


async def test_handler_exceptions_of_every_kind_are_parked_and_the_member_goes_on(
    dsn: str,
) -> None:
    failures: dict[str, BaseException] = {
        "t-0001": OSError("disk full"),
        "t-0002": TimeoutError("upstream slow"),
        "t-0003": asyncio.CancelledError("cancelled inside the handler"),
        "t-0004": KeyError("missing"),
    }
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        await seed(store, aggregates=10, rounds=2)
        head = await store.get_global_position()
        projection = Recording(failures)
        runner = elastic(store, projection, "solo", max_attempts=1)
        try:
            await runner.start()

            async def settled() -> bool:
                parked = await DeadLetterQueue(store).count("breakit")
                return parked + len(set(projection.seen)) == head

            await eventually(settled, "every event handled or parked")
            assert runner.running
        finally:
            async with asyncio.timeout(WAIT):
                await runner.stop()
        letters = await DeadLetterQueue(store).list("breakit")
    assert {letter.event["aggregate_id"] for letter in letters} == set(failures)
    assert len(letters) == 2 * len(failures)


async def test_a_member_stopped_while_another_joins_leaves_nothing_behind(dsn: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        await seed(store, aggregates=20, rounds=2)
        for delay in (0.0, 0.01, 0.05, 0.2):
            first, second = (
                elastic(store, Recording(), "first"),
                elastic(store, Recording(), "second"),
            )
            await first.start()
            await second.start()
            await asyncio.sleep(delay)
            async with asyncio.timeout(WAIT):
                await first.stop()
                await second.stop()
            async with store.connection() as conn:
                members = await conn.fetchval("SELECT count(*) FROM eventuali.group_members")
                owned = await conn.fetchval(
                    "SELECT count(*) FROM eventuali.group_partitions WHERE owner IS NOT NULL"
                )
            assert (members, owned) == (0, 0), delay


async def test_closing_the_store_under_running_members_leaks_nothing(dsn: str) -> None:
    for delay in (0.0, 0.05, 0.3):
        store = await EventStore.create(dsn, poll_interval=0.2)
        ids = await seed(store, aggregates=20, rounds=1, prefix=f"c{delay}")
        runners = [elastic(store, Recording(), name) for name in ("x", "y")]
        for runner in runners:
            await runner.start()
        await append_more(store, ids, rounds=1)
        await asyncio.sleep(delay)
        async with asyncio.timeout(WAIT):
            await store.close()
            for runner in runners:
                await runner.stop()
        assert not any(runner.running for runner in runners)
        tasks = [t for t in asyncio.all_tasks() if "breakit" in t.get_name()]
        assert tasks == []
