"""Random bad input to every public entry point (issue 11 item 6, DESIGN.md C8).

Each call gets hypothesis-generated values of the wrong type or out of range (None, bools, ints
around 2^31 and 2^63, NaN and infinities, NUL characters, lone surrogates, huge strings, naive and
extreme datetimes, bytes, containers, arbitrary objects). Each call either works (the value was
acceptable after all, and then the store still does its job with it) or raises an
:class:`EventualiError` (``ConfigurationError``, ``InvalidInputError``... which are also
``ValueError``s); nothing else escapes, and nothing is written: every store table keeps its
rows.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from helpers.domain import Bucket, Opaque
from helpers.streaming_domain import Ticker
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventuali_pg import (
    Aggregate,
    CheckpointStore,
    ConsumerGroup,
    DeadLetterQueue,
    EventStore,
    EventStreamer,
    EventualiError,
    Projection,
    ProjectionRunner,
    Subscription,
    SubscriptionBuilder,
    event_context,
)
from eventuali_pg.models import Event
from eventuali_pg.store.schema import table_names

WAIT = 10.0  # bound on one wait for a delivery: a failure, never a measurement

_serial = itertools.count()

weird: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
    st.floats(),  # NaN and infinities included
    st.sampled_from([math.nan, math.inf, -math.inf, 1e-300, 1e300, 0.5, -0.0]),
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "é" * 600, "x" * 5000]),
    st.binary(max_size=8),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.frozensets(st.text(max_size=4), max_size=2),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from(
        [
            datetime.min.replace(tzinfo=UTC),
            datetime.max.replace(tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        ]
    ),
    st.uuids(),
    st.just(object()),
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def all_rows(dsn: str) -> dict[str, int]:
    """Row count of every store table (and the global sequence's position)."""
    connection = await asyncpg.connect(dsn)
    try:
        counts = {
            name: int(await connection.fetchval(f"SELECT count(*) FROM {name}"))
            for name in table_names("eventuali")
        }
        counts["position"] = int(
            await connection.fetchval("SELECT position FROM eventuali.global_sequence")
        )
        return counts
    finally:
        await connection.close()


async def works_or_typed_error(call: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
    """(True, result) when ``call`` worked, (False, error) when it raised an EventualiError;
    anything else fails the test."""
    try:
        return True, await call()
    except EventualiError as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return False, exc


async def nothing_written_by(dsn: str, call: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
    """Like :func:`works_or_typed_error`; on an error, every store table kept its rows."""
    before = await all_rows(dsn)
    outcome = await works_or_typed_error(call)
    if not outcome[0]:
        assert await all_rows(dsn) == before, f"written despite {outcome[1]!r}"
    return outcome


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    async with await EventStore.create(dsn) as store:
        existing = Ticker(id="existing")
        existing.tick(1)
        await store.save(existing)  # so "nothing written" is not just "still empty"
        yield store


# -- EventStore.create ---------------------------------------------------------------------------

OPTIONS = [
    "schema",
    "channel",
    "max_payload_bytes",
    "pool_min_size",
    "pool_max_size",
    "connect_timeout",
    "statement_cache_size",
    "notify",
    "poll_interval",
    "heartbeat_interval",
    "heartbeat_timeout",
    "page_size",
    "max_batch_events",
    "max_batch_wait",
    "inline_projections",
]


@SETTINGS
@given(options=st.dictionaries(st.sampled_from(OPTIONS) | st.text(max_size=8), weird, max_size=2))
@example(options={"page_size": 2**63})  # before the fix: accepted, then the live feed stalled
@example(options={"pool_max_size": 2**40})  # before the fix: asyncpg built 2^40 pool slots
@example(options={"inline_projections": None})  # before the fix: a bare TypeError
async def test_create_options(dsn: str, options: dict[str, Any]) -> None:
    """A store opened with odd options still saves, delivers and reads; else a typed error."""
    streamer = EventStreamer()

    async def create() -> EventStore:
        return await EventStore.create(dsn, streamer=streamer, **options)

    opened, store = await nothing_written_by(dsn, create)
    if not opened:
        return
    async with store:
        receiver = await streamer.subscribe(Subscription())
        ticker = Ticker(id=f"create-{next(_serial)}")
        ticker.tick(1)
        position = await store.save(ticker)
        item = await receiver.recv(timeout=WAIT)  # the live feed reads with page_size
        assert item.global_position == position
        read = [e.global_position async for e in store.iter_events_from_position(position - 1)]
        assert read == [position]


# -- saving ----------------------------------------------------------------------------------------

EVENT_FIELDS = [
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "event_version",
    "aggregate_version",
    "timestamp",
    "user_id",
    "causation_id",
    "correlation_id",
    "metadata",
    "event_id",
    "global_position",
    "value",  # the payload (typed Any)
]


def _bad_bucket(field: str, value: Any, where: str) -> Aggregate:
    bucket = Bucket(id=f"bucket-{next(_serial)}")
    event = bucket.apply(Opaque(value=1))
    if where == "event":
        object.__setattr__(event, field, value)  # as a buggy caller or a model_construct would
    else:
        object.__setattr__(bucket, field, value)
    return bucket


@SETTINGS
@given(
    target=st.one_of(
        st.tuples(st.just("event"), st.sampled_from(EVENT_FIELDS)),
        st.tuples(st.just("aggregate"), st.sampled_from(["id", "version"])),
    ),
    value=weird,
    together=st.booleans(),
)
async def test_save_of_bad_values(
    store: EventStore, dsn: str, target: tuple[str, str], value: Any, together: bool
) -> None:
    """A save carrying one odd value (alone, or with a good aggregate in save_all) is stored
    and loads back, or is refused with nothing written."""
    where, field = target
    bad = _bad_bucket(field, value, where)
    good = Ticker(id=f"good-{next(_serial)}")
    good.tick(1)

    ids = [event.event_id for event in bad.get_uncommitted_events()]

    async def save() -> Any:
        if together:
            return await store.save_all([good, bad])
        return await store.save(bad)

    saved, _ = await nothing_written_by(dsn, save)
    if saved:
        assert [event.event_id for event in await store.load_events(bad.id)] == ids
    else:
        assert bad.has_uncommitted_events()  # the caller can fix it and save again


@SETTINGS
@given(first=weird, second=weird, call=st.sampled_from(["save", "save_all", "save_all_list"]))
@example(first=None, second=None, call="save_all")  # before the fix: a bare TypeError
async def test_save_of_things_that_are_not_aggregates(
    store: EventStore, dsn: str, first: Any, second: Any, call: str
) -> None:
    async def save() -> Any:
        if call == "save":
            return await store.save(first)
        if call == "save_all":
            return await store.save_all(first)
        return await store.save_all([first, second])

    saved, result = await nothing_written_by(dsn, save)
    if saved:
        assert result is None  # nothing to save (an empty collection)


@SETTINGS
@given(correlation_id=weird, causation_id=weird, user_id=weird)
async def test_event_context_values(
    store: EventStore, dsn: str, correlation_id: Any, causation_id: Any, user_id: Any
) -> None:
    async def save_in_context() -> Any:
        with event_context(
            correlation_id=correlation_id, causation_id=causation_id, user_id=user_id
        ):
            ticker = Ticker(id=f"context-{next(_serial)}")
            ticker.tick(1)
            return await store.save(ticker)

    await nothing_written_by(dsn, save_in_context)


# -- reading ---------------------------------------------------------------------------------------

READS = [
    "load_events_from_position",
    "iter_events_from_position",
    "load_events",
    "load",
    "get_aggregate_version",
    "get_stream_position_at",
]


@SETTINGS
@given(call=st.sampled_from(READS), a=weird, b=weird, c=weird, d=weird, e=weird)
@example(call="load", a="x", b=False, c=None, d=None, e=None)  # before: an AttributeError
async def test_reads_with_bad_arguments(
    store: EventStore, dsn: str, call: str, a: Any, b: Any, c: Any, d: Any, e: Any
) -> None:
    async def read() -> Any:
        if call == "load_events_from_position":
            return await store.load_events_from_position(
                a, b, aggregate_types=c, event_types=d, up_to=e
            )
        if call == "iter_events_from_position":
            return [
                event
                async for event in store.iter_events_from_position(
                    a, aggregate_types=b, event_types=c, up_to=d, page_size=e
                )
            ]
        if call == "load_events":
            return await store.load_events(a, b)
        if call == "load":
            return await store.load(Ticker if b is None else b, a)
        if call == "get_aggregate_version":
            return await store.get_aggregate_version(a)
        return await store.get_stream_position_at(a, b)

    await nothing_written_by(dsn, read)


# -- streaming -------------------------------------------------------------------------------------


@SETTINGS
@given(capacity=weird)
def test_streamer_capacity(capacity: Any) -> None:
    try:
        streamer = EventStreamer(capacity=capacity)
    except EventualiError as exc:
        assert isinstance(exc, ValueError) and "capacity" in str(exc)
        return
    assert streamer.capacity == capacity


SUBSCRIPTION_ARGUMENTS = [
    "id",
    "aggregate_type_filter",
    "event_type_filter",
    "from_position",
    "from_timestamp",
]


@SETTINGS
@given(arguments=st.dictionaries(st.sampled_from(SUBSCRIPTION_ARGUMENTS), weird, min_size=1))
@example(arguments={"aggregate_type_filter": None})  # before the fix: an AssertionError
async def test_subscription_and_builder_arguments(arguments: dict[str, Any]) -> None:
    async def build() -> Subscription:
        return Subscription(**arguments)

    async def build_fluently() -> Subscription:
        builder = SubscriptionBuilder()
        for name, value in arguments.items():
            if name == "id":
                builder.with_id(value)
            elif name == "aggregate_type_filter":
                builder.filter_by_aggregate_type(value)
            elif name == "event_type_filter":
                builder.filter_by_event_type(value)
            elif name == "from_position":
                builder.from_position(value)
            else:
                builder.from_timestamp(value)
        return builder.build()

    for make in (build, build_fluently):
        await works_or_typed_error(make)


@SETTINGS
@given(
    call=st.sampled_from(
        ["subscribe", "subscribe_from", "unsubscribe", "publish_event", "get_stream_position"]
    ),
    a=weird,
    b=weird,
    c=weird,
)
@example(call="get_stream_position", a=[], b=None, c=None)  # before the fix: a bare TypeError
async def test_streamer_calls_with_bad_arguments(
    store: EventStore, dsn: str, call: str, a: Any, b: Any, c: Any
) -> None:
    streamer = EventStreamer(capacity=4)
    standalone = EventStreamer(capacity=4)
    await store.attach_streamer(streamer)
    try:
        for target in (streamer, standalone):

            async def run(target: EventStreamer = target) -> Any:
                if call == "subscribe":
                    return await target.subscribe(a)
                if call == "subscribe_from":
                    return await target.subscribe(Subscription(), from_position=a)
                if call == "unsubscribe":
                    return await target.unsubscribe(a)
                if call == "publish_event":
                    event = a if not isinstance(a, (type(None), bool)) else Ticker().tick(1)
                    return await target.publish_event(event, b, c)
                return await target.get_stream_position(a)

            await nothing_written_by(dsn, run)
        assert streamer.stats().global_position == await store.get_global_position()
    finally:
        await store.detach_streamer(streamer)


# -- projections and snapshots ---------------------------------------------------------------------


class NoOp(Projection):
    async def handle_event(self, event: Event) -> None:
        """Nothing to do."""


RUNNER_OPTIONS = [
    "subscription_id",
    "aggregate_type_filter",
    "event_type_filter",
    "batch_size",
    "checkpoint_every",
    "checkpoint_interval",
    "max_attempts",
    "retry_delay",
    "max_retry_delay",
    "group",
    "single_active",
    "lease_poll_interval",
    "lease_heartbeat_interval",
    "capacity",
    "stop_timeout",
]


@SETTINGS
@given(options=st.dictionaries(st.sampled_from(RUNNER_OPTIONS), weird, min_size=1, max_size=2))
async def test_projection_runner_options(
    store: EventStore, dsn: str, options: dict[str, Any]
) -> None:
    options.setdefault("subscription_id", f"runner-{next(_serial)}")

    async def construct() -> ProjectionRunner:
        return ProjectionRunner(store, NoOp(), **options)

    await nothing_written_by(dsn, construct)


@SETTINGS
@given(size=weird, member=weird, partitions=weird)
@example(size=1, member=0, partitions=2**40)  # before the fix: a runner's start never ended
async def test_consumer_group_arguments(size: Any, member: Any, partitions: Any) -> None:
    async def group() -> ConsumerGroup:
        made = ConsumerGroup(size=size, member=member, partitions=partitions)
        assert made.owns("some-aggregate") in (True, False)
        assert 1 <= len(made.owned_partitions) <= made.partitions  # what a member starts with
        return made

    await works_or_typed_error(group)


@SETTINGS
@given(
    call=st.sampled_from(["advance", "reset", "get", "delete", "list", "dl_list", "dl_get",
                          "dl_count", "dl_discard", "dl_discard_all"]),
    a=weird,
    b=weird,
)
@example(call="get", a="\x00", b=None)  # before the fix: asyncpg's own error
@example(call="list", a="\x00", b=None)
@example(call="dl_count", a="\ud800", b=None)
async def test_checkpoint_and_dead_letter_calls(
    store: EventStore, dsn: str, call: str, a: Any, b: Any
) -> None:
    checkpoints, dead_letters = CheckpointStore(store), DeadLetterQueue(store)

    async def run() -> Any:
        if call == "advance":
            return await checkpoints.advance(a, b)
        if call == "reset":
            return await checkpoints.reset(a, b)
        if call == "get":
            return await checkpoints.get(a)
        if call == "delete":
            return await checkpoints.delete(a)
        if call == "list":
            return await checkpoints.list(a)
        if call == "dl_list":
            return await dead_letters.list(a)
        if call == "dl_get":
            return await dead_letters.get(a, b)
        if call == "dl_count":
            return await dead_letters.count(a)
        if call == "dl_discard":
            return await dead_letters.discard(a, b)
        return await dead_letters.discard_all(a)

    await nothing_written_by(dsn, run)


@SETTINGS
@given(snapshot_every=weird, snapshot_version=weird)
@example(snapshot_every=1, snapshot_version=2**31)  # before the fix: every snapshot write failed
async def test_snapshot_settings(
    store: EventStore, dsn: str, snapshot_every: Any, snapshot_version: Any
) -> None:
    """An aggregate class with odd snapshot settings is refused when defined, or its aggregates
    save and load (through their snapshots) like any other."""
    name = f"Snapshotted{next(_serial)}"

    async def define() -> type[Aggregate]:
        return type(
            name,
            (Ticker,),
            {"__module__": __name__},
            snapshot_every=snapshot_every,
            snapshot_version=snapshot_version,
        )

    defined, cls = await works_or_typed_error(define)
    if not defined:
        return
    aggregate = cls(id=f"snap-{uuid.uuid4().hex[:8]}")
    for n in range(3):
        aggregate.tick(n)
    await store.save(aggregate)
    if cls.snapshot_every is not None and cls.snapshot_every <= 3:  # a snapshot is due

        async def snapshot_written() -> bool:
            connection = await asyncpg.connect(dsn)
            try:
                return bool(
                    await connection.fetchval(
                        "SELECT count(*) FROM eventuali.snapshots WHERE aggregate_id = $1",
                        aggregate.id,
                    )
                )
            finally:
                await connection.close()

        try:
            async with asyncio.timeout(WAIT):
                while not await snapshot_written():  # noqa: ASYNC110 - bounded, a task writes it
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"no snapshot written for {cls.__name__} in {WAIT}s") from None
    loaded = await store.load(cls, aggregate.id)
    assert loaded is not None and loaded.version == 3 and loaded.count == 3
