"""The append writer: cancellation never strands a save, per-aggregate order, close() with saves
queued, and one refused statement failing only its own save (issue 16, items 1-4 and 2).

A save is kept in flight by holding the global sequence row from another session, so what waits
behind it is an ordering fact, not a timing.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest
from helpers.blocking import WAIT, holding_sequence, until_an_append_waits
from helpers.streaming_domain import Ticker, tickers

from eventuali_pg import EventStore, StatementRefusedError, StoreClosedError


def ticker(aggregate_id: str, version: int = 0, events: int = 1) -> Ticker:
    aggregate = Ticker(id=aggregate_id, version=version)
    for n in range(events):
        aggregate.tick(version + n + 1)
    return aggregate


async def stored_versions(dsn: str) -> dict[str, list[int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT aggregate_id, aggregate_version FROM eventuali.events ORDER BY global_position"
        )
    finally:
        await conn.close()
    versions: dict[str, list[int]] = {}
    for row in rows:
        versions.setdefault(row["aggregate_id"], []).append(row["aggregate_version"])
    return versions


@pytest.mark.parametrize("when", ["while a is in flight", "right after a returns"])
async def test_a_cancelled_queued_save_strands_no_other_save(dsn: str, when: str) -> None:
    async with await EventStore.create(dsn) as store:
        b = ticker("b")
        async with holding_sequence(dsn) as watcher:
            task_a = asyncio.create_task(store.save(ticker("a")))
            await until_an_append_waits(watcher)
            task_b = asyncio.create_task(store.save(b))
            task_c = asyncio.create_task(store.save(ticker("c")))
            await asyncio.sleep(0)  # b and c are queued behind a
            cancelled = task_b.cancel() if when == "while a is in flight" else False
        if when == "right after a returns":
            await task_a
            cancelled = task_b.cancel()  # False if b already ran to completion
        async with asyncio.timeout(WAIT):
            await task_a
            await task_c  # before the fix: waited forever
        if cancelled:
            with pytest.raises(asyncio.CancelledError):
                await task_b
        assert await store.get_aggregate_version("c") == 1
        # b was either withdrawn (nothing written, events kept) or had started and committed
        stored = await store.get_aggregate_version("b")
        assert (stored is None) == b.has_uncommitted_events()


async def test_a_cancelled_in_flight_save_still_settles_its_aggregate(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save(ticker("x"))
        aggregate = ticker("x", version=1)
        event = aggregate.get_uncommitted_events()[0]
        async with holding_sequence(dsn) as watcher:
            task = asyncio.create_task(store.save(aggregate))
            await until_an_append_waits(watcher)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        async with asyncio.timeout(WAIT):
            await store.save(ticker("after"))  # the writer has finished x's group
        assert await store.get_aggregate_version("x") == 2
        assert event.global_position is not None and not aggregate.has_uncommitted_events()


async def test_a_leader_cancelled_while_waiting_for_company_strands_nobody(dsn: str) -> None:
    async with await EventStore.create(dsn, max_batch_wait=0.05) as store:
        first = asyncio.create_task(asyncio.wait_for(store.save(ticker("w1")), 0.001))
        for _ in range(3):
            await asyncio.sleep(0)  # w1's save is queued first (it led the old coalescer)
        others = [asyncio.create_task(store.save(ticker(f"w{n}"))) for n in range(2, 6)]
        with pytest.raises(TimeoutError):
            await first
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*others)
        for n in range(2, 6):
            assert await store.get_aggregate_version(f"w{n}") == 1


@pytest.mark.parametrize("max_batch_wait", [0.0, 0.002])
async def test_random_cancellations_never_leave_a_save_waiting(
    dsn: str, max_batch_wait: float
) -> None:
    rng = random.Random(16)
    async with await EventStore.create(dsn, max_batch_wait=max_batch_wait) as store:
        aggregates = [ticker(f"r{n}", events=rng.randint(1, 3)) for n in range(120)]
        timeouts = [rng.choice([0, 0.0002, 0.001, 0.003, None]) for _ in aggregates]

        async def save(aggregate: Ticker, timeout: float | None) -> str:
            await asyncio.sleep(rng.random() * 0.005)
            try:
                await asyncio.wait_for(store.save(aggregate), timeout)
            except TimeoutError:
                return "cancelled"
            return "saved"

        async with asyncio.timeout(WAIT):
            outcomes = await asyncio.gather(*map(save, aggregates, timeouts))
        versions = await stored_versions(dsn)
        for aggregate, outcome in zip(aggregates, outcomes, strict=True):
            events = len(versions.get(aggregate.id, []))
            if outcome == "saved" or events:
                assert events == aggregate.version and not aggregate.has_uncommitted_events()
            else:  # cancelled before it started: nothing written, events kept
                assert aggregate.has_uncommitted_events()
        assert "cancelled" in outcomes and "saved" in outcomes
    # every save that is not cancelled returned, and close() did not wait on a stranded one


async def test_a_save_never_overtakes_an_earlier_save_of_one_of_its_aggregates(
    dsn: str,
) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save(ticker("z"))
        async with holding_sequence(dsn) as watcher:
            blocked = asyncio.create_task(store.save(ticker("z", version=1)))
            await until_an_append_waits(watcher)
            x1 = ticker("x")
            x2, y1 = ticker("x", version=1), ticker("y")
            y2 = ticker("y", version=1)
            first = asyncio.create_task(store.save(x1))
            await asyncio.sleep(0)
            second = asyncio.create_task(store.save_all([x2, y1]))
            await asyncio.sleep(0)
            third = asyncio.create_task(store.save(y2))  # before the fix: ConcurrencyError
            await asyncio.sleep(0)
        async with asyncio.timeout(WAIT):
            await asyncio.gather(blocked, first, second, third)
        versions = await stored_versions(dsn)
        assert versions["x"] == [1, 2] and versions["y"] == [1, 2]


async def test_close_completes_saves_waiting_to_be_batched(dsn: str) -> None:
    store = await EventStore.create(dsn, max_batch_wait=0.5, max_batch_events=1000)
    saves = [asyncio.create_task(store.save(ticker(f"c{n}"))) for n in range(5)]
    await asyncio.sleep(0)  # queued, waiting for company
    await store.close()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*saves)  # before the fix: "may or may not have been committed"
    versions = await stored_versions(dsn)
    assert sorted(versions) == [f"c{n}" for n in range(5)]
    with pytest.raises(StoreClosedError, match="closed"):
        await store.save(ticker("late"))


async def test_one_refused_save_fails_alone_in_a_coalesced_group(dsn: str) -> None:
    admin = await asyncpg.connect(dsn)
    await admin.execute(
        "ALTER TABLE eventuali.events ADD CONSTRAINT test_refuses_poison "
        "CHECK (aggregate_id NOT LIKE 'poison%')"
    )
    try:
        async with await EventStore.create(dsn, max_batch_wait=0.02) as store:
            aggregates = [*tickers(19, 2, writer="ok"), ticker("poison-1", events=2)]
            random.Random(2).shuffle(aggregates)
            results = await asyncio.gather(
                *(store.save(aggregate) for aggregate in aggregates), return_exceptions=True
            )
            failed = {
                a.id: r
                for a, r in zip(aggregates, results, strict=True)
                if isinstance(r, BaseException)
            }
            assert list(failed) == ["poison-1"]
            assert isinstance(failed["poison-1"], StatementRefusedError)
            assert "test_refuses_poison" in str(failed["poison-1"])
            versions = await stored_versions(dsn)
            assert len(versions) == 19 and "poison-1" not in versions
            positions = await admin.fetch(
                "SELECT global_position FROM eventuali.events ORDER BY 1"
            )
            assert [r[0] for r in positions] == list(range(1, 39))
    finally:
        await admin.execute("ALTER TABLE eventuali.events DROP CONSTRAINT test_refuses_poison")
        await admin.close()
