"""Appending and loading: optimistic concurrency, save_all, round-trip fidelity, reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest
from helpers.append import raw_append
from helpers.db import assert_state
from helpers.domain import (
    AccountOpened,
    Address,
    BankAccount,
    Bucket,
    Counter,
    Customer,
    EverythingHappened,
    Incremented,
    MoneyDeposited,
    Renamed,
    Warehouse,
)

from eventuali_pg import ConcurrencyError, Event, EventStore
from eventuali_pg.migration import head_revision

# C1-C6 and the outbox hold on an ordinary and on a partitioned events table.
pytestmark = pytest.mark.store_layouts


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    store = await EventStore.create(dsn, pool_max_size=30)
    try:
        yield store
    finally:
        await store.close()


async def _history(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(
            "SELECT global_position, aggregate_id, aggregate_version, event_id "
            "FROM eventuali.events ORDER BY global_position"
        ))
    finally:
        await conn.close()


# -- basic append ------------------------------------------------------------------------------


async def test_save_assigns_positions_and_clears_uncommitted(store: EventStore, dsn: str) -> None:
    assert await store.get_global_position() == 0
    account = BankAccount(id="acc-1")
    opened = account.open("ann")
    deposited = account.deposit(10)
    before = datetime.now(UTC)
    await store.save(account)
    assert not account.has_uncommitted_events()
    assert (opened.global_position, deposited.global_position) == (1, 2)
    assert opened.recorded_at is not None and opened.recorded_at == deposited.recorded_at
    assert opened.recorded_at.tzinfo is not None
    assert abs(opened.recorded_at - before) < timedelta(minutes=5)  # the server's clock
    assert await store.get_global_position() == 2
    assert await store.get_aggregate_version("acc-1") == 2
    await assert_state(dsn, 2)

    account.withdraw(3)
    await store.save(account)
    assert await store.get_global_position() == 3
    assert await store.get_aggregate_version("acc-1") == 3
    assert [r["aggregate_version"] for r in await _history(dsn)] == [1, 2, 3]


async def test_save_without_uncommitted_events_writes_nothing(store: EventStore, dsn: str) -> None:
    await store.save(Counter(id="idle"))
    await store.save_all([])
    await assert_state(dsn, 0)


async def test_schema_and_channel_properties(store: EventStore, dsn: str) -> None:
    assert store.schema == "eventuali" and store.channel == "eventuali"
    assert store.dsn == dsn and not store.closed
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval(
            "SELECT version_num FROM eventuali.alembic_version_eventuali_pg") == head_revision()
    finally:
        await conn.close()


async def test_append_notifies_the_new_head(store: EventStore, dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await conn.add_listener("eventuali", lambda *args: received.put_nowait(args[3]))
        counter = Counter(id="n")
        counter.increment()
        counter.increment()
        await store.save(counter)
        assert await asyncio.wait_for(received.get(), 10) == "2"
        counter.increment()
        await store.save(counter)
        assert await asyncio.wait_for(received.get(), 10) == "3"
    finally:
        await conn.close()


# -- optimistic concurrency --------------------------------------------------------------------


@pytest.mark.parametrize("stores", ["shared", "one-per-writer"])
async def test_racing_writers_exactly_one_wins(store: EventStore, dsn: str, stores: str) -> None:
    original = BankAccount(id="contested")
    original.open("ann")
    for amount in range(1, 5):
        original.deposit(amount)
    await store.save(original)
    n = original.version  # 5

    contenders: list[BankAccount] = []
    for _ in range(24):
        copy = await store.load(BankAccount, "contested")
        assert copy is not None and copy.version == n
        copy.deposit(100)
        contenders.append(copy)

    winner_event_ids = {id(c): c.get_uncommitted_events()[0].event_id for c in contenders}
    start = asyncio.Event()

    if stores == "shared":
        writers = [store] * len(contenders)
    else:  # every contender on its own store and connection: the race is in the database
        writers = [await EventStore.create(dsn, pool_min_size=1, pool_max_size=1)
                   for _ in contenders]

    async def attempt(writer: EventStore, aggregate: BankAccount) -> BaseException | None:
        await start.wait()
        try:
            await writer.save(aggregate)
        except ConcurrencyError as exc:
            return exc
        return None

    try:
        tasks = [asyncio.create_task(attempt(w, c))
                 for w, c in zip(writers, contenders, strict=True)]
        await asyncio.sleep(0)
        start.set()
        results = await asyncio.gather(*tasks)
    finally:
        if stores != "shared":
            await asyncio.gather(*(w.close() for w in writers))

    winners = [c for c, r in zip(contenders, results, strict=True) if r is None]
    losers = [(c, r) for c, r in zip(contenders, results, strict=True) if r is not None]
    assert len(winners) == 1
    assert len(losers) == 23
    assert not winners[0].has_uncommitted_events()
    for aggregate, error in losers:
        assert isinstance(error, ConcurrencyError)
        assert error.aggregate_id == "contested"
        assert error.expected_version == n
        assert error.actual_version == n + 1
        assert "contested" in str(error) and "reload" in str(error)
        assert len(aggregate.get_uncommitted_events()) == 1
        pending = aggregate.get_uncommitted_events()[0]
        assert pending.aggregate_version == n + 1 and pending.global_position is None

    rows = await _history(dsn)
    assert [r["global_position"] for r in rows] == list(range(1, n + 2))
    assert [r["aggregate_version"] for r in rows] == list(range(1, n + 2))
    assert rows[-1]["event_id"] == winner_event_ids[id(winners[0])]
    (stored,) = await store.load_events("contested", n)
    assert stored.event_id == winner_event_ids[id(winners[0])]
    assert stored.global_position == n + 1
    await assert_state(dsn, n + 1)

    # A loser reloads, re-applies and succeeds.
    loser = await store.load(BankAccount, "contested")
    assert loser is not None
    loser.deposit(1)
    await store.save(loser)
    assert await store.get_aggregate_version("contested") == n + 2
    assert (await store.load(BankAccount, "contested")).balance == Decimal(10 + 100 + 1)  # type: ignore[union-attr]


async def test_new_aggregate_conflicts_with_existing_id(store: EventStore, dsn: str) -> None:
    first = Counter(id="dup")
    first.increment()
    await store.save(first)
    second = Counter(id="dup")
    second.increment()
    with pytest.raises(ConcurrencyError) as info:
        await store.save(second)
    assert (info.value.aggregate_id, info.value.expected_version,
            info.value.actual_version) == ("dup", 0, 1)
    assert second.has_uncommitted_events()
    await assert_state(dsn, 1)


async def test_stale_writer_conflicts_after_sequential_save(store: EventStore, dsn: str) -> None:
    a = Counter(id="seq")
    a.increment()
    await store.save(a)
    stale = await store.load(Counter, "seq")
    fresh = await store.load(Counter, "seq")
    assert stale is not None and fresh is not None
    fresh.increment()
    fresh.increment()
    await store.save(fresh)
    stale.increment()
    with pytest.raises(ConcurrencyError) as info:
        await store.save(stale)
    assert (info.value.expected_version, info.value.actual_version) == (1, 3)
    await assert_state(dsn, 3)


# -- save_all ----------------------------------------------------------------------------------


async def test_save_all_writes_several_aggregates_in_one_transaction(
    store: EventStore, dsn: str
) -> None:
    a, b, c = BankAccount(id="a"), Counter(id="b"), Warehouse(id="c")
    a.open("ann")
    a.deposit(3)
    b.increment()
    c.apply(Incremented(by=9))
    await store.save_all([a, b, c])
    assert not any(x.has_uncommitted_events() for x in (a, b, c))
    rows = await _history(dsn)
    assert [(r["aggregate_id"], r["aggregate_version"]) for r in rows] == [
        ("a", 1), ("a", 2), ("b", 1), ("c", 1)]
    assert [r["global_position"] for r in rows] == [1, 2, 3, 4]
    recorded = {e.recorded_at for e in await store.load_events_from_position(0)}
    assert len(recorded) == 1  # one transaction
    warehouse = await store.load(Warehouse, "c")
    assert warehouse is not None and warehouse.value == 9
    events = await store.load_events("c")
    assert events[0].aggregate_type == "inventory.Warehouse"


async def test_save_all_writes_nothing_when_one_aggregate_conflicts(
    store: EventStore, dsn: str
) -> None:
    a, b = Counter(id="a"), Counter(id="b")
    a.increment()
    b.increment()
    await store.save_all([a, b])

    stale_b = await store.load(Counter, "b")
    other_b = await store.load(Counter, "b")
    assert stale_b is not None and other_b is not None
    other_b.increment()
    await store.save(other_b)  # position 3, b at version 2

    a.increment()
    a.increment()
    new = Counter(id="new")
    new.increment()
    stale_b.increment()
    with pytest.raises(ConcurrencyError) as info:
        await store.save_all([a, new, stale_b])
    assert info.value.aggregate_id == "b"
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)

    await assert_state(dsn, 3)
    assert await store.get_aggregate_version("a") == 1
    assert await store.get_aggregate_version("new") is None
    assert await store.get_aggregate_version("b") == 2
    for aggregate, pending in ((a, 2), (new, 1), (stale_b, 1)):
        assert len(aggregate.get_uncommitted_events()) == pending
        assert all(e.global_position is None for e in aggregate.get_uncommitted_events())

    # Reloading the loser lets the whole batch go through.
    fresh_b = await store.load(Counter, "b")
    assert fresh_b is not None
    fresh_b.increment()
    await store.save_all([a, new, fresh_b])
    await assert_state(dsn, 7)
    assert [r["aggregate_id"] for r in await _history(dsn)][3:] == ["a", "a", "new", "b"]


# -- round-trip fidelity -----------------------------------------------------------------------


def _everything(**envelope: object) -> EverythingHappened:
    india = timezone(timedelta(hours=5, minutes=30))
    return EverythingHappened(
        when=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-7))),
        reference=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        price=Decimal("1234567890.123456789"),
        ratio=0.1,
        count=-(2**53),
        flag=True,
        nothing=None,
        text="héllo wörld ☃ 🎉 中文 \u2028 \"quoted\" \\ back\nslash\ttab",
        customer=Customer(
            name="Zoë",
            born=datetime(1980, 2, 29, 12, 0, tzinfo=india),
            addresses=[Address(street="Rue ⚑", city="Paris", tags=["home", "ü"]),
                       Address(street="Main", city="Köln")],
            primary=Address(street="Main", city="Köln"),
        ),
        numbers=[1, 2, 3, 0, -1],
        nested={"a": [1, {"b": None, "c": "ñ"}], "empty": {}, "list": [], "bool": False},
        mapping={"x": Decimal("0.10"), "y": Decimal("-3")},
        **envelope,
    )


async def test_round_trip_keeps_every_field(store: EventStore) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    event_id = uuid.uuid4()
    event = _everything(
        event_id=event_id,
        timestamp=datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=india),
        causation_id="cause-1",
        correlation_id="corr-ü",
        user_id="user-123",
        metadata={"tenant": "acme", "trace": {"span": 7, "sampled": True}, "tags": ["a", "ö"]},
        event_version=3,
    )
    bucket = Bucket(id="bucket-1")
    bucket.apply(event)
    await store.save(bucket)

    loaded = await store.load_events("bucket-1")
    assert len(loaded) == 1
    got = loaded[0]
    assert type(got) is EverythingHappened
    assert got == event
    assert got.model_dump() == event.model_dump()
    assert got.event_id == event_id
    assert got.timestamp == datetime(2024, 2, 29, 7, 44, 15, 123456, tzinfo=UTC)
    assert got.timestamp.tzinfo is not None
    assert got.causation_id == "cause-1"
    assert got.correlation_id == "corr-ü"
    assert got.user_id == "user-123"
    assert got.metadata == {"tenant": "acme", "trace": {"span": 7, "sampled": True},
                            "tags": ["a", "ö"]}
    assert got.event_version == 3
    assert got.aggregate_version == 1
    assert got.aggregate_id == "bucket-1" and got.aggregate_type == "Bucket"
    assert got.event_type == "EverythingHappened"
    assert got.global_position == 1
    assert got.recorded_at is not None and got.recorded_at == event.recorded_at
    # payload types survive, not just their string forms
    assert isinstance(got.reference, uuid.UUID)
    assert isinstance(got.price, Decimal) and got.price == Decimal("1234567890.123456789")
    assert str(got.mapping["x"]) == "0.10"
    assert isinstance(got.customer, Customer) and isinstance(got.customer.addresses[0], Address)
    assert got.customer.born.utcoffset() is not None
    assert got.when == event.when
    assert got.text == event.text
    assert got.count == -(2**53)

    # the same through the other read paths
    assert (await store.load_events_from_position(0)) == [event]
    rebuilt = await store.load(Bucket, "bucket-1")
    assert rebuilt is not None and rebuilt.items == [event.text] and rebuilt.version == 1


async def test_load_rebuilds_aggregate(store: EventStore) -> None:
    account = BankAccount(id="acc")
    account.open("ann", user_id="u1")
    account.deposit("10.10")
    await store.save(account)
    account.withdraw("0.05")
    account.deposit(1)
    await store.save(account)
    loaded = await store.load(BankAccount, "acc")
    assert loaded is not None
    assert (loaded.id, loaded.owner, loaded.balance, loaded.version) == (
        "acc", "ann", Decimal("11.05"), 4)
    assert not loaded.has_uncommitted_events()
    assert await store.load(BankAccount, "missing") is None
    assert await store.load_events("missing") == []
    assert await store.get_aggregate_version("missing") is None


async def test_event_type_keyword_round_trip(store: EventStore) -> None:
    counter = Counter(id="c")
    counter.rename("first")
    await store.save(counter)
    (event,) = await store.load_events("c")
    assert type(event) is Renamed and event.event_type == "counter.renamed"
    conn = await asyncpg.connect(store.dsn)
    try:
        assert await conn.fetchval("SELECT event_type FROM eventuali.events") == "counter.renamed"
    finally:
        await conn.close()


async def test_unknown_event_type_loads_as_generic_event(store: EventStore, dsn: str) -> None:
    # A row written by another program whose event class this process does not have.
    event_id = uuid.uuid4()
    when = datetime(2023, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
    payload = {"colour": "blue", "n": 3, "nested": {"deep": ["ü", 1.5]}}
    ghost = Event(
        event_type="GhostHappened", event_id=event_id, timestamp=when, aggregate_id="ghost-1",
        aggregate_type="Bucket", aggregate_version=1, event_version=2, causation_id="c",
        user_id="u", metadata={"h": 1}, **payload,
    )
    conn = await asyncpg.connect(dsn)
    try:
        head = await raw_append(conn, store, [Bucket(id="ghost-1")], [ghost], [0])
        assert head == 1
    finally:
        await conn.close()

    (event,) = await store.load_events("ghost-1")
    assert type(event) is Event
    assert event.event_type == "GhostHappened"
    assert event.event_id == event_id and event.timestamp == when
    assert (event.event_version, event.aggregate_version, event.global_position) == (2, 1, 1)
    assert event.aggregate_type == "Bucket"
    assert event.causation_id == "c" and event.correlation_id is None and event.user_id == "u"
    assert event.metadata == {"h": 1}
    assert event.model_extra == payload
    assert event.colour == "blue"  # type: ignore[attr-defined]
    assert event.payload() == payload

    # and an aggregate with a handler for it can be rebuilt from it
    bucket = await store.load(Bucket, "ghost-1")
    assert bucket is not None and bucket.items == [payload]

    # a generic event is written back with its data kept
    bucket.apply(Event(event_type="GhostHappened", colour="red"))
    await store.save(bucket)
    events = await store.load_events("ghost-1", from_version=1)
    assert len(events) == 1 and events[0].model_extra == {"colour": "red"}


# -- reads -------------------------------------------------------------------------------------


async def _populate(store: EventStore) -> None:
    """Positions 1..9: a1(1,2) c1(3) w1(4) a1(5) c1(6: renamed) w1(7) c2(8) a2(9)."""
    a1, c1, w1 = BankAccount(id="a1"), Counter(id="c1"), Warehouse(id="w1")
    a1.open("ann")
    a1.deposit(1)
    await store.save(a1)
    c1.increment()
    await store.save(c1)
    w1.apply(Incremented(by=1))
    await store.save(w1)
    a1.deposit(2)
    await store.save(a1)
    c1.rename("x")
    await store.save(c1)
    w1.apply(Incremented(by=2))
    await store.save(w1)
    c2, a2 = Counter(id="c2"), BankAccount(id="a2")
    c2.increment()
    a2.open("bob")
    await store.save_all([c2, a2])


def _positions(events: list[Event]) -> list[int | None]:
    return [e.global_position for e in events]


async def test_load_events_from_version(store: EventStore) -> None:
    await _populate(store)
    assert [e.aggregate_version for e in await store.load_events("a1")] == [1, 2, 3]
    assert [e.aggregate_version for e in await store.load_events("a1", 1)] == [2, 3]
    assert [e.aggregate_version for e in await store.load_events("a1", from_version=2)] == [3]
    assert await store.load_events("a1", 3) == []
    assert await store.load_events("a1", 100) == []
    assert [type(e) for e in await store.load_events("a1")] == [
        AccountOpened, MoneyDeposited, MoneyDeposited]


async def test_load_events_from_position(store: EventStore) -> None:
    await _populate(store)
    assert await store.get_global_position() == 9
    assert _positions(await store.load_events_from_position(0)) == list(range(1, 10))
    assert _positions(await store.load_events_from_position(4)) == [5, 6, 7, 8, 9]
    assert await store.load_events_from_position(9) == []
    assert await store.load_events_from_position(1000) == []
    assert _positions(await store.load_events_from_position(0, 3)) == [1, 2, 3]
    assert _positions(await store.load_events_from_position(2, limit=2)) == [3, 4]
    assert await store.load_events_from_position(0, limit=0) == []
    assert _positions(await store.load_events_from_position(0, up_to=4)) == [1, 2, 3, 4]
    assert _positions(await store.load_events_from_position(3, up_to=5)) == [4, 5]
    assert await store.load_events_from_position(5, up_to=5) == []
    assert await store.load_events_from_position(5, up_to=2) == []
    assert _positions(await store.load_events_from_position(1, 2, up_to=9)) == [2, 3]


async def test_load_events_from_position_filters(store: EventStore) -> None:
    await _populate(store)
    read = store.load_events_from_position
    assert _positions(await read(0, aggregate_types="BankAccount")) == [1, 2, 5, 9]
    assert _positions(await read(0, aggregate_types=["BankAccount"])) == [1, 2, 5, 9]
    assert _positions(await read(0, aggregate_types=["Counter", "inventory.Warehouse"])) == [
        3, 4, 6, 7, 8]
    assert _positions(await read(0, aggregate_types=("Counter",))) == [3, 6, 8]
    assert _positions(await read(0, aggregate_types={"Counter"})) == [3, 6, 8]
    assert _positions(await read(0, aggregate_types="Nobody")) == []
    assert _positions(await read(0, event_types="Incremented")) == [3, 4, 7, 8]
    assert _positions(await read(0, event_types=["counter.renamed", "AccountOpened"])) == [
        1, 6, 9]
    assert _positions(await read(0, aggregate_types="Counter", event_types="Incremented")) == [
        3, 8]
    assert _positions(await read(3, aggregate_types="Counter", event_types="Incremented")) == [8]
    assert _positions(await read(0, 1, aggregate_types="Counter",
                                 event_types=["Incremented"])) == [3]
    assert _positions(await read(0, event_types="Incremented", up_to=7)) == [3, 4, 7]
    assert _positions(await read(2, 2, aggregate_types=["BankAccount", "Counter"],
                                 event_types=["MoneyDeposited", "Incremented",
                                              "counter.renamed"], up_to=8)) == [3, 5]


async def test_positions_and_versions_when_empty(store: EventStore) -> None:
    assert await store.get_global_position() == 0
    assert await store.load_events_from_position(0) == []
    assert await store.get_aggregate_version("nobody") is None


# -- filtered reads use their indexes ----------------------------------------------------------


async def _plan(conn: asyncpg.Connection, query: str, *args: object) -> str:
    rows = await conn.fetch("EXPLAIN " + query, *args)
    return "\n".join(r[0] for r in rows)


async def test_filtered_reads_use_indexes(store: EventStore, dsn: str, store_layout: str) -> None:
    if store_layout == "partitioned":
        pytest.skip("partitions of 100 events are read by sequential scans; "
                    "test_partitioned_store.py checks the indexes of larger partitions")
    # A few thousand rows, bulk-loaded with the store's own append statement.
    conn = await asyncpg.connect(dsn)
    try:
        total = 0
        rare_every = 100
        now = datetime.now(UTC)
        for batch_no in range(6):
            n = 1000
            events = [
                Event(
                    event_type="RareHappened" if (total + i) % rare_every == 7 else f"Usual{i % 4}",
                    aggregate_type="Rare" if (total + i) % rare_every == 0 else f"Common{i % 3}",
                    aggregate_id=f"bulk-{batch_no}-{i}", aggregate_version=1, timestamp=now, i=i,
                )
                for i in range(n)
            ]
            holders = [Bucket(id=e.aggregate_id) for e in events]
            head = await raw_append(conn, store, holders, events, [0] * n)
            total += n
            assert head == total
        await conn.execute("ANALYZE eventuali.events")

        by_aggregate = store._sql.read_from_position(
            aggregate_types=True, event_types=False, upper_bound=False, limit=True)
        plan = await _plan(conn, by_aggregate, 0, ["Rare"], 100)
        assert "events_aggregate_type_position_idx" in plan, plan

        by_event = store._sql.read_from_position(
            aggregate_types=False, event_types=True, upper_bound=False, limit=True)
        plan = await _plan(conn, by_event, 0, ["RareHappened"], 100)
        assert "events_event_type_position_idx" in plan, plan

        by_event_bounded = store._sql.read_from_position(
            aggregate_types=False, event_types=True, upper_bound=True, limit=False)
        plan = await _plan(conn, by_event_bounded, 1000, ["RareHappened"], 5000)
        assert "events_event_type_position_idx" in plan, plan

        # The unfiltered read walks the primary key, not the whole table.
        unfiltered = store._sql.read_from_position(
            aggregate_types=False, event_types=False, upper_bound=False, limit=True)
        plan = await _plan(conn, unfiltered, total - 10, 100)
        assert "events_pkey" in plan, plan
    finally:
        await conn.close()

    # And the store reads through them give the right rows.
    rare = await store.load_events_from_position(0, aggregate_types="Rare")
    assert _positions(rare) == list(range(1, total + 1, rare_every))
    rare_events = await store.load_events_from_position(0, 10, event_types=["RareHappened"])
    assert _positions(rare_events) == list(range(8, 8 + 10 * rare_every, rare_every))
    assert all(type(e) is Event for e in rare_events)
