"""Saving again events that are already stored (as after an in-doubt failure) succeeds without
writing anything; a partial match is a typed error (issue 11 item 1, DESIGN C12)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from helpers.streaming_domain import Ticker

from eventuali_pg import ConcurrencyError, EventStore, RetryMismatchError

# C1-C6 and the outbox hold on an ordinary and on a partitioned events table.
pytestmark = pytest.mark.store_layouts


def ticker(aggregate_id: str, events: int = 1, version: int = 0) -> Ticker:
    aggregate = Ticker(id=aggregate_id, version=version)
    for n in range(events):
        aggregate.tick(version + n + 1)
    return aggregate


def in_doubt_copy(aggregate: Ticker) -> Ticker:
    """What the caller still holds after a save whose outcome it never learnt."""
    return aggregate.model_copy(deep=True)


async def count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM eventuali.events"))
    finally:
        await conn.close()


async def test_a_retried_save_writes_nothing_and_reports_the_stored_positions(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save(ticker("before"))
        original = ticker("retried", events=3)
        retry = in_doubt_copy(original)
        await store.save(original)
        await store.save(ticker("after"))
        retry_events = retry.get_uncommitted_events()
        await store.save(retry)  # before: ConcurrencyError (expected 0, is 3)
        assert not retry.has_uncommitted_events()
        assert [e.global_position for e in retry_events] == [2, 3, 4]
        assert await count_rows(dsn) == 5
        assert await store.get_global_position() == 5


async def test_retried_events_get_their_stored_positions_and_commit_times(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        original = ticker("stamps", events=2)
        retry = in_doubt_copy(original)
        retry_events = retry.get_uncommitted_events()
        await store.save(original)
        await store.save(retry)
        saved = await store.load_events("stamps")
        assert [e.global_position for e in retry_events] == [e.global_position for e in saved]
        assert [e.recorded_at for e in retry_events] == [e.recorded_at for e in saved]


async def test_retries_coalesced_with_new_saves_and_in_save_all(dsn: str) -> None:
    async with await EventStore.create(dsn, max_batch_wait=0.01) as store:
        originals = [ticker(f"r{n}", events=2) for n in range(5)]
        retries = [in_doubt_copy(a) for a in originals]
        await store.save_all(originals)
        fresh = [ticker(f"f{n}") for n in range(5)]
        await asyncio.gather(*(store.save(a) for a in [*retries, *fresh]))
        assert await count_rows(dsn) == 15
        assert all(not a.has_uncommitted_events() for a in [*retries, *fresh])


async def test_a_retry_inside_a_store_transaction_is_idempotent(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        original = ticker("tx-retry", events=2)
        retry = in_doubt_copy(original)
        async with store.transaction() as tx:
            await tx.save(original)
        async with store.transaction() as tx:
            await tx.save(retry)
        assert not retry.has_uncommitted_events()
        assert [e.global_position for e in await store.load_events("tx-retry")] == [1, 2]
        assert await count_rows(dsn) == 2


async def test_a_partly_stored_save_is_a_typed_error(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        original = ticker("partial", events=1)
        retry = in_doubt_copy(original)
        await store.save(original)
        retry.tick(99)  # one stored event, one new: neither new nor a repeat
        with pytest.raises(RetryMismatchError, match="only 1 of its 2 events"):
            await store.save(retry)
        assert retry.has_uncommitted_events()
        assert await count_rows(dsn) == 1


async def test_the_same_ids_at_other_versions_are_a_typed_error(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        original = ticker("moved", events=2)
        await store.save(original)
        stored = await store.load_events("moved")
        shifted = Ticker(id="moved", version=1)
        shifted.apply(stored[0].model_copy(update={"global_position": None, "recorded_at": None}))
        with pytest.raises(RetryMismatchError, match="another aggregate or version"):
            await store.save(shifted)


async def test_a_different_save_is_still_a_concurrency_error(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save(ticker("contended"))
        with pytest.raises(ConcurrencyError):
            await store.save(ticker("contended"))  # new event ids: another writer's save
