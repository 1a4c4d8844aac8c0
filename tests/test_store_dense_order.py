"""C1 under fire: dense, commit-ordered global positions with rollbacks and delayed commits.

Writers of three kinds race: ``store.save``/``save_all`` on a shared store (where concurrent
saves may be coalesced) or on a store of their own (the append as one autocommitted statement),
and hand-driven transactions that run the store's own append statement inside an explicit
``BEGIN``, then sleep while holding their positions before committing or rolling back. A reader
keeps reading from its last position; it must never see a hole or a reordering, and at the end
it must have read exactly the committed events, at positions 1..N.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest
from helpers.append import raw_append
from helpers.db import assert_state
from helpers.domain import Counter, Incremented

from eventuali_pg import EventStore

# C1-C6 and the outbox hold on an ordinary and on a partitioned events table.
pytestmark = pytest.mark.store_layouts

WRITERS_SAVE = 8
WRITERS_MANUAL = 10  # each on its own connection; together at least 16 concurrent writers
ROUNDS = 40
MAX_BATCH = 8


def _aggregate_with_events(rng: random.Random, prefix: str) -> Counter:
    counter = Counter(id=f"{prefix}-{uuid.uuid4().hex[:12]}")
    for _ in range(rng.randint(1, MAX_BATCH)):
        counter.increment(rng.randint(1, 5))
    return counter


@pytest.mark.slow
async def test_reader_never_sees_holes_or_reordering(dsn: str) -> None:
    rng = random.Random(20261128)
    store = await EventStore.create(dsn, pool_min_size=1, pool_max_size=WRITERS_SAVE + 2)
    own_stores = [await EventStore.create(dsn, pool_min_size=1, pool_max_size=1)
                  for _ in range(WRITERS_SAVE // 2)]
    manual_conns = [await asyncpg.connect(dsn) for _ in range(WRITERS_MANUAL)]
    committed: set[uuid.UUID] = set()
    rolled_back: set[uuid.UUID] = set()
    stats = {"save": 0, "commit": 0, "rollback": 0, "reads": 0}
    writers_done = asyncio.Event()
    start = asyncio.Event()

    async def save_writer(seed: int, writer: EventStore) -> None:
        local = random.Random(seed)
        await start.wait()
        for _ in range(ROUNDS):
            if local.random() < 0.3:
                # several aggregates in one transaction
                aggregates = [_aggregate_with_events(local, f"s{seed}")
                              for _ in range(local.randint(2, 3))]
                ids = [e.event_id for a in aggregates for e in a.get_uncommitted_events()]
                await writer.save_all(aggregates)
            else:
                aggregates = [_aggregate_with_events(local, f"s{seed}")]
                ids = [e.event_id for e in aggregates[0].get_uncommitted_events()]
                await writer.save(aggregates[0])
            for aggregate in aggregates:
                assert not aggregate.has_uncommitted_events()
            committed.update(ids)
            stats["save"] += 1
            await asyncio.sleep(local.random() * 0.004)

    async def manual_writer(seed: int, conn: asyncpg.Connection) -> None:
        local = random.Random(seed)
        await start.wait()
        for _ in range(ROUNDS):
            aggregate = _aggregate_with_events(local, f"m{seed}")
            ids = {event.event_id for event in aggregate.get_uncommitted_events()}
            roll_back = local.random() < 0.4
            tx = conn.transaction()
            await tx.start()
            try:
                # the store's own append statement: takes the positions, locks the sequence row
                await raw_append(conn, store, [aggregate])
                # hold them for a while (commits deliberately delayed)
                await asyncio.sleep(local.random() * 0.006)
            except BaseException:
                await tx.rollback()
                raise
            if roll_back:
                await tx.rollback()
                rolled_back.update(ids)
                stats["rollback"] += 1
            else:
                await tx.commit()
                committed.update(ids)
                stats["commit"] += 1
            await asyncio.sleep(local.random() * 0.004)

    read_ids: list[uuid.UUID] = []

    async def reader() -> None:
        last = 0
        while True:
            finished = writers_done.is_set()
            limit = rng.choice([None, 1, 7, 50, 500])
            batch = await store.load_events_from_position(last, limit)
            stats["reads"] += 1
            if batch:
                positions = [e.global_position for e in batch]
                assert positions == list(range(last + 1, last + 1 + len(batch))), (
                    f"after position {last} the reader got {positions[:20]}"
                )
                assert not (rolled_back & {e.event_id for e in batch})
                read_ids.extend(e.event_id for e in batch)
                last = positions[-1]
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    async def writers() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(WRITERS_SAVE):
                    writer = own_stores[i // 2] if i % 2 else store
                    group.create_task(save_writer(1000 + i, writer))
                for i, conn in enumerate(manual_conns):
                    group.create_task(manual_writer(2000 + i, conn))
                start.set()
        finally:
            writers_done.set()

    try:
        # A failing writer or reader cancels all the others.
        async with asyncio.TaskGroup() as group:
            group.create_task(reader())
            group.create_task(writers())
    finally:
        for conn in manual_conns:
            await conn.close()
        for own in own_stores:
            await own.close()
        await store.close()

    assert stats["rollback"] > 0 and stats["commit"] > 0 and stats["save"] > 0
    assert stats["reads"] > 10
    n = len(committed)
    assert not committed & rolled_back
    assert len(read_ids) == n == len(set(read_ids))
    assert set(read_ids) == committed
    await assert_state(dsn, n)

    # The table agrees: positions 1..N, exactly the committed events.
    check = await EventStore.create(dsn)
    try:
        everything = await check.load_events_from_position(0)
        assert [e.global_position for e in everything] == list(range(1, n + 1))
        assert [e.event_id for e in everything] == read_ids
        assert all(isinstance(e, Incremented) for e in everything)
        # per aggregate versions are dense too
        versions: dict[str, list[int]] = {}
        for e in everything:
            versions.setdefault(e.aggregate_id, []).append(e.aggregate_version)
        assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    finally:
        await check.close()
