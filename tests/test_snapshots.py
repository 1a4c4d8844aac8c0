"""Snapshots (issue 10 item 2): ``load`` from the latest usable snapshot equals a full replay;
snapshots of another snapshot version, corrupted ones and ones ahead of the events are
ignored; optimistic concurrency holds for aggregates loaded from a snapshot."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from eventuali_pg import Aggregate, ConcurrencyError, Event, EventStore


class LedgerDeposited(Event):
    amount: int


class LedgerWithdrawn(Event):
    amount: int


class LedgerRenamed(Event):
    name: str


class Ledger(Aggregate, snapshot_every=3):
    balance: int = 0
    name: str = ""
    history: list[int] = Field(default_factory=list)

    def deposit(self, amount: int) -> None:
        self.apply(LedgerDeposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        self.apply(LedgerWithdrawn(amount=amount))

    def rename(self, name: str) -> None:
        self.apply(LedgerRenamed(name=name))

    def apply_ledger_deposited(self, event: LedgerDeposited) -> None:
        self.balance += event.amount
        self.history = [*self.history, event.amount]

    def apply_ledger_withdrawn(self, event: LedgerWithdrawn) -> None:
        self.balance -= event.amount
        self.history = [*self.history, -event.amount]

    def apply_ledger_renamed(self, event: LedgerRenamed) -> None:
        self.name = event.name


class LedgerV2(Aggregate, snapshot_every=3, snapshot_version=2):
    """The same stream read by a class whose state changed shape."""

    aggregate_type = "Ledger"
    balance: int = 0
    name: str = ""
    history: list[int] = Field(default_factory=list)

    apply_ledger_deposited = Ledger.apply_ledger_deposited
    apply_ledger_withdrawn = Ledger.apply_ledger_withdrawn
    apply_ledger_renamed = Ledger.apply_ledger_renamed


_serial = itertools.count()


@pytest.fixture(scope="module")
async def store(database_dsn: str) -> AsyncIterator[EventStore]:
    store = await EventStore.create(database_dsn)
    try:
        yield store
    finally:
        await store.close()


async def snapshots_written(store: EventStore) -> None:
    await store._snapshots._queue.join()  # the snapshot writer's queue, drained


async def snapshot_row(dsn: str, aggregate_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(
            "SELECT version, snapshot_version, state FROM eventuali.snapshots "
            "WHERE aggregate_id = $1",
            aggregate_id,
        )
    finally:
        await conn.close()


commands = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(-(2**31), 2**31)),
        st.tuples(st.just("withdraw"), st.integers(0, 1000)),
        st.tuples(st.just("rename"), st.text(max_size=20).filter(lambda t: "\x00" not in t)),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(saves=st.lists(commands, min_size=1, max_size=8))
async def test_loading_from_a_snapshot_equals_a_full_replay(
    store: EventStore, database_dsn: str, saves: list[list[tuple[str, object]]]
) -> None:
    aggregate_id = f"ledger-{next(_serial)}"
    ledger = Ledger(id=aggregate_id)
    for batch in saves:
        current = await store.load(Ledger, aggregate_id) or ledger
        for command, argument in batch:
            getattr(current, command)(argument)
        await store.save(current)
        await snapshots_written(store)
        loaded = await store.load(Ledger, aggregate_id)
        replayed = Ledger.from_events(await store.load_events(aggregate_id))
        assert loaded is not None
        assert loaded.model_dump() == replayed.model_dump()
        assert loaded.version == current.version
    row = await snapshot_row(database_dsn, aggregate_id)
    total = sum(len(batch) for batch in saves)
    if total >= 3:
        assert row is not None and row["version"] % 3 in (0, 1, 2) and row["version"] <= total
    else:
        assert row is None


async def saved_ledger(store: EventStore, aggregate_id: str, deposits: int) -> Ledger:
    ledger = Ledger(id=aggregate_id)
    for n in range(deposits):
        ledger.deposit(n + 1)
    await store.save(ledger)
    await snapshots_written(store)
    return ledger


async def test_a_snapshot_of_another_snapshot_version_is_ignored(
    store: EventStore, database_dsn: str
) -> None:
    await saved_ledger(store, "versioned", 4)
    row = await snapshot_row(database_dsn, "versioned")
    assert row is not None and row["snapshot_version"] == 1 and row["version"] == 4
    conn = await asyncpg.connect(database_dsn)
    try:  # a v1 snapshot that would give a wrong balance if it were used
        await conn.execute(
            "UPDATE eventuali.snapshots SET state = jsonb_set(state, '{balance}', '999') "
            "WHERE aggregate_id = 'versioned'"
        )
    finally:
        await conn.close()
    loaded = await store.load(LedgerV2, "versioned")
    assert loaded is not None and loaded.balance == 1 + 2 + 3 + 4
    assert (await store.load(Ledger, "versioned")).balance == 999  # type: ignore[union-attr]


async def test_a_corrupted_snapshot_is_ignored_with_a_warning(
    store: EventStore, database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    await saved_ledger(store, "corrupted", 3)
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(
            "UPDATE eventuali.snapshots SET state = '{\"balance\": \"lots\", \"extra\": 1}' "
            "WHERE aggregate_id = 'corrupted'"
        )
    finally:
        await conn.close()
    with caplog.at_level(logging.WARNING, logger="eventuali_pg.store"):
        loaded = await store.load(Ledger, "corrupted")
    assert loaded is not None and loaded.balance == 6 and loaded.version == 3
    assert "no longer fits" in caplog.text


async def test_a_snapshot_ahead_of_the_events_is_ignored(
    store: EventStore, database_dsn: str
) -> None:
    await saved_ledger(store, "ahead", 3)
    conn = await asyncpg.connect(database_dsn)
    try:
        await conn.execute(
            "UPDATE eventuali.snapshots SET version = 9, "
            "state = jsonb_set(state, '{version}', '9') WHERE aggregate_id = 'ahead'"
        )
    finally:
        await conn.close()
    loaded = await store.load(Ledger, "ahead")
    assert loaded is not None and loaded.version == 3 and loaded.balance == 6


async def test_concurrency_holds_for_aggregates_loaded_from_a_snapshot(store: EventStore) -> None:
    await saved_ledger(store, "contested-ledger", 5)
    first = await store.load(Ledger, "contested-ledger")
    second = await store.load(Ledger, "contested-ledger")
    assert first is not None and second is not None and first.version == 5
    first.deposit(10)
    await store.save(first)
    second.deposit(20)
    with pytest.raises(ConcurrencyError) as raised:
        await store.save(second)
    assert (raised.value.expected_version, raised.value.actual_version) == (5, 6)
    loaded = await store.load(Ledger, "contested-ledger")
    assert loaded is not None and loaded.balance == 15 + 10 and loaded.version == 6
