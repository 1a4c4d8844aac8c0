"""C8: bad input is rejected with the right error, and nothing is written."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from helpers.db import assert_state
from helpers.domain import BankAccount, Blob, Bucket, Counter, Opaque

import eventuali_pg
import eventuali_pg.migration
from eventuali_pg import (
    ConfigurationError,
    DatabaseUnavailableError,
    EventStore,
    EventualiError,
    InvalidInputError,
    PayloadTooLargeError,
    SchemaNotReadyError,
    SerializationError,
    StoreClosedError,
)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    store = await EventStore.create(dsn)
    try:
        yield store
    finally:
        await store.close()


async def _one_saved(store: EventStore) -> BankAccount:
    """A committed aggregate at position 1, so "nothing written" is not just "still empty"."""
    account = BankAccount(id="existing")
    account.open("ann")
    await store.save(account)
    return account


# -- payloads that cannot be stored ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param({"nested": object()}, id="nested-object"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param([1.0, -math.inf], id="inf-in-list"),
        pytest.param({"deep": [{"x": math.nan}]}, id="nested-nan"),
        pytest.param("nul \x00 inside", id="nul-char"),
        pytest.param({"key\x00": 1}, id="nul-in-key"),
        pytest.param({1, 2}, id="set-ok-or-error"),
    ],
)
async def test_unserializable_payload(store: EventStore, dsn: str, value: Any) -> None:
    existing = await _one_saved(store)
    bucket = Bucket(id="b")
    bucket.apply(Opaque(value=value))
    if isinstance(value, set):
        # pydantic turns a set into a JSON list: this one is storable and round-trips as a list.
        await store.save(bucket)
        (event,) = await store.load_events("b")
        assert sorted(event.value) == [1, 2]  # type: ignore[attr-defined]
        return
    existing.deposit(1)
    with pytest.raises(SerializationError) as info:
        await store.save_all([existing, bucket])  # the good aggregate is not written either
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)
    assert "Opaque" in str(info.value)
    await assert_state(dsn, 1)
    assert bucket.has_uncommitted_events() and existing.has_uncommitted_events()


async def test_unserializable_metadata(store: EventStore, dsn: str) -> None:
    await _one_saved(store)
    counter = Counter(id="c")
    counter.increment()
    counter.get_uncommitted_events()[0].metadata["bad"] = object()
    with pytest.raises(SerializationError, match="metadata"):
        await store.save(counter)
    counter2 = Counter(id="c2")
    counter2.increment()
    counter2.get_uncommitted_events()[0].metadata["nul"] = "a\x00b"
    with pytest.raises(SerializationError, match="NUL"):
        await store.save(counter2)
    counter3 = Counter(id="c3")
    counter3.increment()
    counter3.get_uncommitted_events()[0].metadata["ratio"] = math.nan
    with pytest.raises(SerializationError, match="metadata"):
        await store.save(counter3)
    await assert_state(dsn, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
async def test_non_finite_float_in_a_float_field(store: EventStore, dsn: str,
                                                 value: float) -> None:
    from helpers.domain import Measured

    bucket = Bucket(id="m")
    bucket.apply(Measured(reading=value))
    with pytest.raises(SerializationError, match="Measured"):
        await store.save(bucket)
    await assert_state(dsn, 0)


async def test_payload_over_the_limit(dsn: str) -> None:
    async with await EventStore.create(dsn, max_payload_bytes=200) as store:
        small = Bucket(id="small")
        small.apply(Blob(data="x" * 50))
        await store.save(small)
        big = Bucket(id="big")
        big.apply(Blob(data="y" * 50))
        big.apply(Blob(data="z" * 500))
        with pytest.raises(PayloadTooLargeError) as info:
            await store.save(big)
        assert info.value.limit == 200
        assert info.value.size > 500
        assert "200" in str(info.value) and "max_payload_bytes" in str(info.value)
        assert isinstance(info.value, InvalidInputError)
        await assert_state(dsn, 1)
        assert len(big.get_uncommitted_events()) == 2
        # metadata counts too
        meta = Bucket(id="meta")
        meta.apply(Blob(data="", metadata={"h": "m" * 300}))
        with pytest.raises(PayloadTooLargeError):
            await store.save(meta)
        await assert_state(dsn, 1)


# -- ids and events not made through apply() ---------------------------------------------------


async def test_empty_aggregate_id(store: EventStore, dsn: str) -> None:
    counter = Counter(id="")
    counter.increment()
    with pytest.raises(InvalidInputError, match="aggregate id"):
        await store.save(counter)
    for call in (store.load_events(""), store.load(Counter, ""),
                 store.get_aggregate_version("")):
        with pytest.raises(InvalidInputError):
            await call
    with pytest.raises(InvalidInputError):
        await store.load_events(None)  # type: ignore[arg-type]
    await assert_state(dsn, 0)


async def test_events_not_recorded_through_apply(store: EventStore, dsn: str) -> None:
    await _one_saved(store)
    from helpers.domain import Incremented

    # an event stamped for another aggregate
    a = Counter(id="a")
    a.increment()
    a.get_uncommitted_events()[0].aggregate_id = "someone-else"
    a._uncommitted[0].aggregate_id = "someone-else"
    with pytest.raises(InvalidInputError, match="apply"):
        await store.save(a)

    # an event with a wrong version
    b = Counter(id="b")
    b.increment()
    b._uncommitted[0].aggregate_version = 5
    with pytest.raises(InvalidInputError, match="version"):
        await store.save(b)

    # more uncommitted events than the version allows
    c = Counter(id="c")
    c._uncommitted.append(Incremented(by=1, aggregate_id="c", aggregate_type="Counter",
                                      aggregate_version=1))
    with pytest.raises(InvalidInputError):
        await store.save(c)

    # an event with no aggregate type
    d = Counter(id="d")
    d.increment()
    d._uncommitted[0].aggregate_type = ""
    with pytest.raises(InvalidInputError, match="aggregate_type"):
        await store.save(d)
    await assert_state(dsn, 1)


async def test_saving_an_already_stored_event_again(store: EventStore, dsn: str) -> None:
    account = await _one_saved(store)
    stored = (await store.load_events("existing"))[0]
    other = BankAccount(id="other")
    other.apply(stored.model_copy(update={"global_position": 1}))
    with pytest.raises(InvalidInputError, match="already stored"):
        await store.save(other)
    # the same event id with the position cleared: the database's unique key rejects it
    copy = BankAccount(id="copy")
    copy.apply(stored.model_copy(update={"global_position": None, "recorded_at": None}))
    with pytest.raises(InvalidInputError, match="event id"):
        await store.save(copy)
    assert copy.has_uncommitted_events()
    await assert_state(dsn, 1)
    assert account.version == 1


async def test_bad_save_all_arguments(store: EventStore, dsn: str) -> None:
    await _one_saved(store)
    a = Counter(id="twice")
    a.increment()
    b = Counter(id="twice")
    b.increment()
    with pytest.raises(InvalidInputError, match="twice"):
        await store.save_all([a, b])
    with pytest.raises(InvalidInputError, match="Aggregate"):
        await store.save_all([a, "not an aggregate"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        await store.save("not an aggregate")  # type: ignore[arg-type]
    await assert_state(dsn, 1)


# -- positions, limits, filters ----------------------------------------------------------------


BAD_POSITIONS = [-1, -100, True, False, 1.0, 1.5, "3", None, Decimal(1)]


@pytest.mark.parametrize("position", BAD_POSITIONS, ids=repr)
async def test_bad_positions(store: EventStore, position: object) -> None:
    await _one_saved(store)
    with pytest.raises(InvalidInputError, match="position"):
        await store.load_events_from_position(position)  # type: ignore[arg-type]
    if position is not None:
        with pytest.raises(InvalidInputError, match="up_to"):
            await store.load_events_from_position(0, up_to=position)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="from_version"):
        await store.load_events("existing", position)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [-1, True, False, 2.0, "10"], ids=repr)
async def test_bad_limits(store: EventStore, limit: object) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        await store.load_events_from_position(0, limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [[], (), set(), "", [""], ["ok", ""], [1], ["ok", None], b"bytes", bytearray(b"x"), 5,
     object()],
    ids=repr,
)
@pytest.mark.parametrize("which", ["aggregate_types", "event_types"])
async def test_bad_filters(store: EventStore, which: str, value: object) -> None:
    with pytest.raises(InvalidInputError, match=which):
        await store.load_events_from_position(0, **{which: value})  # type: ignore[arg-type]


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"bogus": 1},
        {"max_payload_byte": 10},
        {"schema": "Bad-Name"},
        {"schema": "UPPER"},
        {"schema": "x; DROP TABLE y"},
        {"schema": ""},
        {"schema": "pg_catalog"},
        {"schema": "a" * 64},
        {"schema": 7},
        {"channel": "bad channel"},
        {"max_payload_bytes": 0},
        {"max_payload_bytes": True},
        {"pool_max_size": 0},
        {"pool_min_size": -1},
        {"pool_min_size": 5, "pool_max_size": 2},
    ],
    ids=repr,
)
async def test_bad_options(dsn: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        await EventStore.create(dsn, **options)
    assert isinstance(info.value, EventualiError) and isinstance(info.value, ValueError)
    key = next(iter(options))
    if key in ("bogus", "max_payload_byte"):
        assert key in str(info.value) and "Valid options" in str(info.value)


async def test_no_dsn_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTUALI_PG_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="EVENTUALI_PG_DSN"):
        await EventStore.create()
    with pytest.raises(ConfigurationError):
        await EventStore.create("")
    with pytest.raises(ConfigurationError):
        await EventStore.create("   ")
    with pytest.raises(ConfigurationError):
        await eventuali_pg.migrate()


async def test_dsn_from_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTUALI_PG_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", dsn)
    async with await EventStore.create() as store:
        assert store.dsn == dsn
    monkeypatch.setenv("EVENTUALI_PG_DSN", dsn)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    async with await EventStore.create() as store:
        assert store.dsn == dsn


async def test_unreachable_server() -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        await EventStore.create("postgresql://postgres@127.0.0.1:1/x", connect_timeout=5)
    message = str(info.value)
    assert "127.0.0.1" in message and "port 1" in message and "'x'" in message
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, EventualiError)
    with pytest.raises(DatabaseUnavailableError, match="port 1"):
        await eventuali_pg.current_revision("postgresql://postgres@127.0.0.1:1/x")


async def test_missing_database(pg_admin_dsn: str) -> None:
    from _server import with_database

    missing = with_database(pg_admin_dsn, f"no_such_db_{uuid.uuid4().hex[:8]}")
    with pytest.raises(DatabaseUnavailableError) as info:
        await EventStore.create(missing)
    assert "no_such_db_" in str(info.value)


async def test_missing_schema(dsn: str) -> None:
    with pytest.raises(SchemaNotReadyError) as info:
        await EventStore.create(dsn, schema="nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "eventuali-pg migrate --schema nope" in message
    assert "eventuali_pg.migrate" in message


@pytest.fixture
async def scratch_schema(dsn: str) -> AsyncIterator[str]:
    name = f"outdated_{uuid.uuid4().hex[:10]}"
    await eventuali_pg.migrate(dsn, schema=name)
    try:
        yield name
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()


async def test_outdated_schema_after_downgrade(dsn: str, scratch_schema: str) -> None:
    async with await EventStore.create(dsn, schema=scratch_schema) as store:
        assert await store.get_global_position() == 0
    await eventuali_pg.downgrade(dsn, schema=scratch_schema)
    with pytest.raises(SchemaNotReadyError) as info:
        await EventStore.create(dsn, schema=scratch_schema)
    assert f"migrate --schema {scratch_schema}" in str(info.value)


async def test_schema_one_revision_behind(dsn: str, scratch_schema: str) -> None:
    await eventuali_pg.downgrade(dsn, schema=scratch_schema, revision="-1")
    behind = await eventuali_pg.current_revision(dsn, schema=scratch_schema)
    assert behind != eventuali_pg.migration.head_revision()
    with pytest.raises(SchemaNotReadyError) as info:
        await EventStore.create(dsn, schema=scratch_schema)
    assert f"migrate --schema {scratch_schema}" in str(info.value)
    if behind is not None:
        assert behind in str(info.value) and "older" in str(info.value)
    await eventuali_pg.migrate(dsn, schema=scratch_schema)
    async with await EventStore.create(dsn, schema=scratch_schema) as store:
        assert await store.get_global_position() == 0


async def test_schema_at_an_older_or_unknown_revision(dsn: str, scratch_schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"UPDATE {scratch_schema}.alembic_version_eventuali_pg SET version_num = 'ffff_future'"
        )
        with pytest.raises(SchemaNotReadyError) as info:
            await EventStore.create(dsn, schema=scratch_schema)
        assert "ffff_future" in str(info.value) and "upgrade eventuali-pg" in str(info.value)
        await conn.execute(f"DELETE FROM {scratch_schema}.alembic_version_eventuali_pg")
        with pytest.raises(SchemaNotReadyError, match="migrate"):
            await EventStore.create(dsn, schema=scratch_schema)
    finally:
        await conn.close()


# -- a closed store ----------------------------------------------------------------------------


async def test_closed_store(dsn: str) -> None:
    store = await EventStore.create(dsn)
    await store.close()
    assert store.closed
    counter = Counter(id="late")
    counter.increment()
    calls = [
        store.save(counter),
        store.save_all([counter]),
        store.load(Counter, "late"),
        store.load_events("late"),
        store.load_events_from_position(0),
        store.get_global_position(),
        store.get_aggregate_version("late"),
    ]
    for call in calls:
        with pytest.raises(StoreClosedError, match=r"EventStore\.create"):
            await call
    assert counter.has_uncommitted_events()
    await assert_state(dsn, 0)


def test_every_error_derives_from_eventuali_error() -> None:
    import inspect

    import eventuali_pg.errors as errors

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == errors.__name__]
    assert len(classes) > 10
    assert all(issubclass(c, EventualiError) for c in classes)


async def test_rows_written_behind_the_stores_back_give_a_clear_error(dsn: str) -> None:
    """A sequence row left behind by hand-written rows is named as such, not as a conflict."""
    async with await EventStore.create(dsn) as store:
        first = Counter(id="behind-1")
        first.increment()
        await store.save(first)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(  # a maintenance step by the owner (the sequence is append-only)
                "BEGIN; SET LOCAL eventuali_pg.maintenance = 'on'; "
                "UPDATE eventuali.global_sequence SET position = 0; COMMIT"
            )
        finally:
            await conn.close()
        second = Counter(id="behind-2")
        second.increment()
        with pytest.raises(EventualiError, match="without advancing") as caught:
            await store.save(second)
        assert not isinstance(caught.value, eventuali_pg.ConcurrencyError)
        assert second.has_uncommitted_events()


# -- issue 16 item F: read-side values PostgreSQL refuses ----------------------------------------


@pytest.mark.parametrize("position", [2**63, 2**64], ids=repr)
async def test_f_positions_beyond_bigint(store: EventStore, position: int) -> None:
    """Item F: positions and limits past 2**63 - 1 used to reach the driver."""
    await _one_saved(store)
    with pytest.raises(InvalidInputError, match="position"):
        await store.load_events_from_position(position)
    with pytest.raises(InvalidInputError, match="up_to"):
        await store.load_events_from_position(0, up_to=position)
    with pytest.raises(InvalidInputError, match="limit"):
        await store.load_events_from_position(0, position)
    with pytest.raises(InvalidInputError, match="up_to"):
        await store.get_stream_position_at("existing", position)
    # the largest values are fine
    assert len(await store.load_events_from_position(0, 2**63 - 1, up_to=2**63 - 1)) == 1
    assert await store.load_events_from_position(2**63 - 1) == []


async def test_f_versions_beyond_int4(store: EventStore) -> None:
    """Item F: from_version is an int4 column's value."""
    await _one_saved(store)
    with pytest.raises(InvalidInputError, match="from_version"):
        await store.load_events("existing", 2**31)
    assert await store.load_events("existing", 2**31 - 1) == []


@pytest.mark.parametrize(
    "bad", ["a\x00b", "a\ud800", "é" * 513], ids=["nul", "surrogate", "too-long"]
)
async def test_f_bad_ids_on_reads(store: EventStore, bad: str) -> None:
    """Item F: ids PostgreSQL cannot take are refused on every read."""
    await _one_saved(store)
    for call in (
        store.load_events(bad),
        store.load(BankAccount, bad),
        store.get_aggregate_version(bad),
        store.get_stream_position_at(bad, 1),
    ):
        with pytest.raises(InvalidInputError, match="aggregate id"):
            await call


@pytest.mark.parametrize(
    "value",
    ["X\x00", ["ok", "X\x00"], "\udc80", ("ok", "é" * 513), {"BankAccount": 1},
     {"BankAccount": "x"}.keys().mapping],
    ids=["nul", "nul-in-list", "surrogate", "too-long", "dict", "mapping-proxy"],
)
@pytest.mark.parametrize("which", ["aggregate_types", "event_types"])
async def test_f_bad_name_filters_on_reads(store: EventStore, which: str, value: object) -> None:
    """Item F: NUL, lone surrogates, over-long names and mappings (whose keys were silently
    used) are refused; sets are fine."""
    await _one_saved(store)
    with pytest.raises(InvalidInputError, match=which):
        await store.load_events_from_position(0, **{which: value})  # type: ignore[arg-type]
    name = "BankAccount" if which == "aggregate_types" else "AccountOpened"
    assert len(await store.load_events_from_position(0, **{which: {name}})) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["X\x00", ["X", "Y\ud800"], {"X": True}], ids=["nul", "surrogate", "dict"]
)
@pytest.mark.parametrize("which", ["aggregate_type_filter", "event_type_filter"])
def test_f_subscription_filters_are_checked_at_construction(which: str, value: object) -> None:
    """Item F: such a subscription used to be accepted, then its catch-up read failed forever."""
    from eventuali_pg import Subscription, SubscriptionBuilder

    with pytest.raises(InvalidInputError, match=which):
        Subscription(**{which: value})  # type: ignore[arg-type]
    builder = SubscriptionBuilder()
    with pytest.raises(InvalidInputError):
        if which == "aggregate_type_filter":
            builder.filter_by_aggregate_type(value)  # type: ignore[arg-type]
        else:
            builder.filter_by_event_type(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="from_position"):
        Subscription(from_position=2**63)
    assert Subscription(**{which: {"X", "Y"}}).matches is not None  # type: ignore[arg-type]
