"""Events in the application's own transaction (issue 9): the three forms, commit and rollback,
the no-stall property as an ordering fact, isolation, and a torture mix with subscribers."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from helpers.streaming_domain import Ticker, tickers
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from eventuali_pg import (
    ConcurrencyError,
    EventStore,
    EventStreamer,
    InvalidInputError,
    Subscription,
)
from eventuali_pg.store.transaction import IsolationError

# C1-C6 and the outbox hold on an ordinary and on a partitioned events table.
pytestmark = pytest.mark.store_layouts

WAIT = 30.0
OUTBOX_WRITER = Path(__file__).parent / "helpers" / "outbox_writer.py"


class Failed(Exception):
    pass


@pytest.fixture
async def orders(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The application's own table, empty; yields an admin connection to look at it."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS outbox_orders (id text PRIMARY KEY, writer text); "
        "TRUNCATE outbox_orders"
    )
    try:
        yield conn
    finally:
        await conn.close()


def ticker(aggregate_id: str, version: int = 0, events: int = 1) -> Ticker:
    aggregate = Ticker(id=aggregate_id, version=version)
    for n in range(events):
        aggregate.tick(version + n + 1)
    return aggregate


async def stored(conn: asyncpg.Connection) -> list[tuple[int, str, int]]:
    rows = await conn.fetch(
        "SELECT global_position, aggregate_id, aggregate_version FROM eventuali.events "
        "ORDER BY global_position"
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def order_ids(conn: asyncpg.Connection) -> set[str]:
    return {row[0] for row in await conn.fetch("SELECT id FROM outbox_orders")}


async def test_store_transaction_commits_rows_and_events_together(
    dsn: str, orders: asyncpg.Connection
) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription())
        order = ticker("order-1", events=2)
        async with store.transaction() as tx:
            await tx.connection.execute("INSERT INTO outbox_orders (id) VALUES ('order-1')")
            await tx.save(order)
            assert order.has_uncommitted_events()  # not before the commit
            # Meanwhile another save commits and is delivered: the staged events are not.
            await store.save(ticker("other"))
            first = await receiver.recv(timeout=WAIT)
            assert first.event.aggregate_id == "other"
            assert await stored(orders) == [(1, "other", 1)]
            assert await order_ids(orders) == set()
        assert await order_ids(orders) == {"order-1"}
        assert await stored(orders) == [(1, "other", 1), (2, "order-1", 1), (3, "order-1", 2)]
        assert not order.has_uncommitted_events()
        assert [e.global_position for e in order.uncommitted_events] == []
        delivered = [await receiver.recv(timeout=WAIT) for _ in range(2)]
        assert [d.global_position for d in delivered] == [2, 3]
        assert all(d.event.aggregate_id == "order-1" for d in delivered)


async def test_store_transaction_stamps_positions_after_commit(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        order = ticker("stamped", events=2)
        events = order.get_uncommitted_events()
        async with store.transaction() as tx:
            await tx.save(order)
            assert events[0].global_position is None
        assert [e.global_position for e in events] == [1, 2]
        assert all(e.recorded_at is not None for e in events)
        order.tick(3)
        await store.save(order)  # the aggregate goes on from version 2
        assert await store.get_aggregate_version("stamped") == 3


async def test_store_transaction_rolls_back_rows_and_events(
    dsn: str, orders: asyncpg.Connection
) -> None:
    async with await EventStore.create(dsn) as store:
        await store.save(ticker("before"))
        order = ticker("order-2", events=2)
        with pytest.raises(Failed):
            async with store.transaction() as tx:
                await tx.connection.execute("INSERT INTO outbox_orders (id) VALUES ('order-2')")
                await tx.save(order)
                raise Failed
        assert await order_ids(orders) == set()
        assert await stored(orders) == [(1, "before", 1)]
        assert order.has_uncommitted_events()  # kept: save again
        await store.save(ticker("after"))
        await store.save(order)
        assert await stored(orders) == [
            (1, "before", 1), (2, "after", 1), (3, "order-2", 1), (4, "order-2", 2)
        ]


async def test_caller_connection_commits_and_rolls_back(
    dsn: str, orders: asyncpg.Connection
) -> None:
    async with await EventStore.create(dsn) as store:
        conn = await asyncpg.connect(dsn)
        try:
            committed = ticker("conn-1")
            async with conn.transaction():
                await conn.execute("INSERT INTO outbox_orders (id) VALUES ('conn-1')")
                await store.save(committed, connection=conn)
                assert committed.uncommitted_events == []  # marked at save()
                assert await stored(orders) == []
            rolled_back = ticker("conn-2")
            with pytest.raises(Failed):
                async with conn.transaction():
                    await conn.execute("INSERT INTO outbox_orders (id) VALUES ('conn-2')")
                    await store.save_all([rolled_back], connection=conn)
                    raise Failed
            await store.save(ticker("plain"))
        finally:
            await conn.close()
        assert await order_ids(orders) == {"conn-1"}
        assert await stored(orders) == [(1, "conn-1", 1), (2, "plain", 1)]


async def test_sqlalchemy_session_commits_and_rolls_back(
    dsn: str, orders: asyncpg.Connection
) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "outbox_orders", metadata, sa.Column("id", sa.Text, primary_key=True),
        sa.Column("writer", sa.Text),
    )
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    make_session = async_sessionmaker(engine, class_=AsyncSession)
    try:
        async with await EventStore.create(dsn) as store:
            async with make_session() as session:
                await session.execute(sa.insert(table).values(id="sa-1", writer="orm"))
                await store.save(ticker("sa-1"), session=session)
                await session.commit()
            async with make_session() as session:
                await session.execute(sa.insert(table).values(id="sa-2"))
                await store.save(ticker("sa-2"), session=session)
                await session.rollback()
            await store.save(ticker("plain"))
    finally:
        await engine.dispose()
    assert await order_ids(orders) == {"sa-1"}
    assert await stored(orders) == [(1, "sa-1", 1), (2, "plain", 1)]


async def test_an_open_transaction_holds_up_only_writers_of_its_aggregate(
    dsn: str, orders: asyncpg.Connection
) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer, max_batch_wait=0.001) as store:
        receiver = await streamer.subscribe(Subscription())
        in_tx = ticker("X", events=2)
        rival = ticker("X")
        scope = store.transaction()
        tx = await scope.__aenter__()
        try:
            await tx.save(in_tx)
            rival_save = asyncio.create_task(store.save(rival))
            others = [asyncio.create_task(store.save(ticker(f"o{n}"))) for n in range(20)]

            async def another_transaction(name: str) -> None:
                async with store.transaction() as other:
                    await other.connection.execute(
                        "INSERT INTO outbox_orders (id) VALUES ($1)", name
                    )
                    await other.save(ticker(name))

            transactions = [asyncio.create_task(another_transaction(f"t{n}")) for n in range(2)]
            async with asyncio.timeout(WAIT):  # all of these finish while X's transaction is open
                await asyncio.gather(*others, *transactions)
                delivered = [await receiver.recv() for _ in range(22)]
            assert sorted(d.event.aggregate_id for d in delivered) == sorted(
                [f"o{n}" for n in range(20)] + ["t0", "t1"]
            )
            assert not rival_save.done()  # the one writer of X waits for the transaction
        finally:
            await scope.__aexit__(None, None, None)
        with pytest.raises(ConcurrencyError):
            async with asyncio.timeout(WAIT):
                await rival_save
        rows = await stored(orders)
        assert [position for position, _, _ in rows] == list(range(1, 25))
        assert [(a, v) for _, a, v in rows[-2:]] == [("X", 1), ("X", 2)]  # the winner comes last
        last = [await receiver.recv(timeout=WAIT) for _ in range(2)]
        assert [d.global_position for d in last] == [23, 24]


async def test_two_transactions_on_one_aggregate_never_both_win(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        first_scope = store.transaction()
        first = await first_scope.__aenter__()
        await first.save(ticker("contested"))

        async def second() -> None:
            async with store.transaction() as tx:
                await tx.save(ticker("contested"))

        racing = asyncio.create_task(second())
        await store.save(ticker("unrelated"))  # others go on meanwhile
        assert not racing.done()
        await first_scope.__aexit__(None, None, None)
        with pytest.raises(ConcurrencyError):
            async with asyncio.timeout(WAIT):
                await racing
        assert await store.get_aggregate_version("contested") == 1


@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
async def test_stricter_isolation_is_refused_before_writing(dsn: str, isolation: str) -> None:
    async with await EventStore.create(dsn) as store:
        conn = await asyncpg.connect(dsn)
        try:
            aggregate = ticker("iso")
            async with conn.transaction(isolation=isolation):
                with pytest.raises(IsolationError, match="READ COMMITTED"):
                    await store.save(aggregate, connection=conn)
            assert aggregate.has_uncommitted_events()
            with pytest.raises(InvalidInputError, match="needs an open transaction"):
                await store.save(aggregate, connection=conn)
        finally:
            await conn.close()
        assert await store.get_global_position() == 0


@pytest.mark.slow
async def test_torture_plain_and_transactional_writers_with_subscribers(
    dsn: str, orders: asyncpg.Connection
) -> None:
    rng = random.Random(9)
    fast, slow = EventStreamer(), EventStreamer(capacity=8)
    async with await EventStore.create(dsn, streamer=fast, pool_max_size=8) as store:
        await store.attach_streamer(slow)
        receivers = [
            await fast.subscribe(Subscription(id="fast")),
            await slow.subscribe(Subscription(id="slow")),
        ]
        committed_orders: set[str] = set()

        async def plain_writer(name: str) -> None:
            for n in range(15):
                await store.save_all(tickers(rng.randint(1, 3), 2, writer=f"{name}-{n}"))

        async def transactional_writer(name: str) -> None:
            for n in range(15):
                order_id = f"{name}-{n}"
                try:
                    async with store.transaction() as tx:
                        await tx.connection.execute(
                            "INSERT INTO outbox_orders (id) VALUES ($1)", order_id
                        )
                        await tx.save(ticker(order_id, events=rng.randint(1, 3)))
                        await asyncio.sleep(rng.random() * 0.01)
                        if rng.random() < 0.3:
                            raise Failed
                    committed_orders.add(order_id)
                except Failed:
                    pass

        process = await asyncio.create_subprocess_exec(
            sys.executable, str(OUTBOX_WRITER), dsn, "proc", "30", stdout=subprocess.PIPE
        )
        async with asyncio.timeout(120):
            await asyncio.gather(
                *(plain_writer(f"p{n}") for n in range(3)),
                *(transactional_writer(f"t{n}") for n in range(4)),
            )
            out, _ = await process.communicate()
        assert process.returncode == 0
        committed_orders.update(json.loads(out)["committed"])
        rows = await stored(orders)
        head = len(rows)
        assert [position for position, _, _ in rows] == list(range(1, head + 1))
        assert await order_ids(orders) == committed_orders
        for receiver in receivers:
            async with asyncio.timeout(120):
                got = [(await receiver.recv()).global_position for _ in range(head)]
            assert got == list(range(1, head + 1))
