"""C9: close() and ``async with`` release every connection and leave no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from helpers.domain import Counter

from eventuali_pg import EventStore, StoreClosedError
from eventuali_pg.stream import EventStreamer, Subscription

#: The test's own connection must not look like the library's (``eventuali_pg%``): it would
#: count itself, and every wait for "no store connection left" would run to its time limit.
ADMIN_APPLICATION = "lifecycle_test_admin"


@pytest.fixture
async def admin(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": ADMIN_APPLICATION})
    try:
        yield conn
    finally:
        await conn.close()


async def _store_connections(admin: asyncpg.Connection) -> int:
    return int(await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name LIKE 'eventuali\\_pg%' AND datname = current_database() "
        "AND pid <> pg_backend_pid()"
    ))


async def _settles_to(admin: asyncpg.Connection, expected: int) -> int:
    """The connection count once it reaches ``expected``; backends exit a moment after the
    client hangs up, so poll for a while before reporting the last count seen."""
    count = await _store_connections(admin)
    for _ in range(200):
        if count == expected:
            break
        await asyncio.sleep(0.05)
        count = await _store_connections(admin)
    return count


def _other_tasks() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def _use(store: EventStore, aggregate_id: str) -> None:
    counter = Counter(id=aggregate_id)
    counter.increment()
    await store.save(counter)
    assert await store.get_global_position() >= 1
    assert await store.load(Counter, aggregate_id) is not None


async def test_close_releases_every_connection(dsn: str, admin: asyncpg.Connection) -> None:
    before = await _settles_to(admin, 0)
    tasks_before = _other_tasks()
    store = await EventStore.create(dsn, pool_min_size=3, pool_max_size=5)
    await _use(store, "a")
    # several connections busy at once
    await asyncio.gather(*(store.get_global_position() for _ in range(10)))
    assert await _store_connections(admin) >= before + 3
    await store.close()
    assert store.closed
    assert await _settles_to(admin, before) == before
    await asyncio.sleep(0)
    assert _other_tasks() == tasks_before


async def test_async_with_closes(dsn: str, admin: asyncpg.Connection) -> None:
    before = await _settles_to(admin, 0)
    tasks_before = _other_tasks()
    async with await EventStore.create(dsn, pool_min_size=2) as store:
        await _use(store, "b")
        assert await _store_connections(admin) >= before + 2
        assert not store.closed
    assert store.closed
    assert await _settles_to(admin, before) == before
    await asyncio.sleep(0)
    assert _other_tasks() == tasks_before
    with pytest.raises(StoreClosedError):
        await store.get_global_position()


async def test_async_with_closes_on_error(dsn: str, admin: asyncpg.Connection) -> None:
    before = await _settles_to(admin, 0)
    with pytest.raises(RuntimeError, match="boom"):
        async with await EventStore.create(dsn) as store:
            await _use(store, "c")
            raise RuntimeError("boom")
    assert store.closed
    assert await _settles_to(admin, before) == before


async def test_close_is_idempotent(dsn: str, admin: asyncpg.Connection) -> None:
    before = await _settles_to(admin, 0)
    store = await EventStore.create(dsn)
    await _use(store, "d")
    await store.close()
    await store.close()
    async with store:
        pass
    await asyncio.gather(store.close(), store.close())
    assert store.closed
    assert await _settles_to(admin, before) == before


async def test_failed_create_leaves_no_connection(dsn: str, admin: asyncpg.Connection) -> None:
    from eventuali_pg import SchemaNotReadyError

    before = await _settles_to(admin, 0)
    tasks_before = _other_tasks()
    for _ in range(3):
        with pytest.raises(SchemaNotReadyError):
            await EventStore.create(dsn, schema="not_migrated_here", pool_min_size=2)
    assert await _settles_to(admin, before) == before
    await asyncio.sleep(0)
    assert _other_tasks() == tasks_before


async def test_close_with_a_streamer_ends_receivers(dsn: str, admin: asyncpg.Connection) -> None:
    before = await _settles_to(admin, 0)
    tasks_before = _other_tasks()
    streamer = EventStreamer(capacity=16)
    store = await EventStore.create(dsn, streamer=streamer)
    receiver = await streamer.subscribe(Subscription(id="lifecycle"))
    received: list[int] = []

    async def consume() -> None:
        async for item in receiver:
            received.append(item.global_position)

    consumer = asyncio.create_task(consume())
    await _use(store, "e")
    for _ in range(200):
        if received:
            break
        await asyncio.sleep(0.05)
    assert received == [1]
    assert await _store_connections(admin) > before
    await store.close()
    # the receiver's iteration ends cleanly, without an error
    await asyncio.wait_for(consumer, 10)
    assert consumer.exception() is None
    assert await _settles_to(admin, before) == before
    await asyncio.sleep(0)
    assert _other_tasks() == tasks_before


async def test_many_stores_open_and_closed(dsn: str, admin: asyncpg.Connection) -> None:
    before = await _settles_to(admin, 0)
    stores = [await EventStore.create(dsn, pool_min_size=1) for _ in range(5)]
    await asyncio.gather(*(_use(s, f"many-{i}") for i, s in enumerate(stores)))
    assert await _store_connections(admin) >= before + 5
    await asyncio.gather(*(s.close() for s in stores))
    assert await _settles_to(admin, before) == before
