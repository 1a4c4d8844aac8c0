"""Issue 16: values that pass the model but PostgreSQL refuses or cannot give back.

Each test names the item of the issue it covers (A: values PostgreSQL refuses, B: the payload
limit counts bytes, C: only what loads back equal is saved, D: JSON number limits, E: the NUL
check and escaped backslashes). Every refusal is an InvalidInputError raised before anything is
written, naming the field; the good aggregate saved alongside is not written either.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from helpers.db import assert_state
from helpers.domain import Blob, Bucket, Counter, Incremented, Measured, Opaque
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from eventuali_pg import (
    Aggregate,
    Event,
    EventStore,
    InvalidInputError,
    PayloadTooLargeError,
    SerializationError,
)
from eventuali_pg.store.validation import MAX_NAME_BYTES


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    store = await EventStore.create(dsn)
    try:
        yield store
    finally:
        await store.close()


async def _one_saved(store: EventStore) -> Counter:
    """A committed aggregate at position 1, so "nothing written" is not just "still empty"."""
    counter = Counter(id="existing")
    counter.increment()
    await store.save(counter)
    counter.increment()  # uncommitted again: saved alongside the bad one, must not be written
    return counter


async def _refused(store: EventStore, dsn: str, bad: Aggregate, *, match: str) -> None:
    good = await _one_saved(store)
    with pytest.raises(InvalidInputError, match=match):
        await store.save_all([good, bad])
    await assert_state(dsn, 1)
    assert good.has_uncommitted_events() and bad.has_uncommitted_events()


# -- A: text PostgreSQL refuses ------------------------------------------------------------------

TOO_LONG = "é" * (MAX_NAME_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
BAD_TEXT = [
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("a\ud800b", "surrogate", id="lone-surrogate"),
    pytest.param(TOO_LONG, "bytes", id="too-long"),
]
ENVELOPE_TEXT = ["user_id", "causation_id", "correlation_id", "event_type", "aggregate_type"]


@pytest.mark.parametrize(("value", "why"), BAD_TEXT)
async def test_a_bad_aggregate_id_is_refused(
    store: EventStore, dsn: str, value: str, why: str
) -> None:
    """Item A: NUL, lone surrogates and ids too long for the btree index."""
    bad = Counter(id=value)
    bad.increment()
    await _refused(store, dsn, bad, match=f"(?s)aggregate id.*{why}")


@pytest.mark.parametrize("field", ENVELOPE_TEXT)
@pytest.mark.parametrize(("value", "why"), BAD_TEXT)
async def test_a_bad_envelope_text_is_refused(
    store: EventStore, dsn: str, field: str, value: str, why: str
) -> None:
    """Item A: the same for every text column of the envelope."""
    bad = Counter(id="bad")
    bad.increment()
    setattr(bad.get_uncommitted_events()[0], field, value)
    await _refused(store, dsn, bad, match=f"(?s){field}.*{why}")


async def test_a_bad_aggregate_type_of_a_class_is_refused(store: EventStore, dsn: str) -> None:
    """Item A: an aggregate class whose type name PostgreSQL refuses."""

    class Nul(Aggregate):
        aggregate_type = "Nul\x00"

        def apply_incremented(self, event: Incremented) -> None:
            pass

    bad = Nul(id="nul-type")
    bad.apply(Incremented())
    await _refused(store, dsn, bad, match="aggregate_type.*NUL")


async def test_a_ids_at_the_limit_are_stored(store: EventStore) -> None:
    """Item A: the documented limit itself is fine, counted in UTF-8 bytes."""
    at_limit = "é" * (MAX_NAME_BYTES // 2)
    counter = Counter(id=at_limit)
    event = counter.increment()
    event.user_id = event.correlation_id = event.causation_id = at_limit
    await store.save(counter)
    (loaded,) = await store.load_events(at_limit)
    assert loaded.aggregate_id == at_limit and loaded.user_id == at_limit


@pytest.mark.parametrize("version", [-1, 0, 2**31, True, 1.0, "1", None], ids=repr)
async def test_a_bad_event_version_is_refused(
    store: EventStore, dsn: str, version: object
) -> None:
    """Item A: event_version is an int4 >= 1 (-1 used to be stored)."""
    bad = Counter(id="bad")
    bad.increment()
    bad.get_uncommitted_events()[0].event_version = version  # type: ignore[assignment]
    await _refused(store, dsn, bad, match="event_version")


async def test_a_largest_event_version_is_stored(store: EventStore) -> None:
    """Item A: 2**31 - 1 still fits."""
    counter = Counter(id="v")
    counter.apply(Incremented(event_version=2**31 - 1))
    await store.save(counter)
    (loaded,) = await store.load_events("v")
    assert loaded.event_version == 2**31 - 1


async def test_a_aggregate_version_beyond_int4_is_refused(store: EventStore, dsn: str) -> None:
    """Item A: aggregate versions are int4."""
    bad = Counter(id="big", version=2**31 - 1)
    bad.increment()
    await _refused(store, dsn, bad, match="version")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\ud800", id="string"),
        pytest.param({"k\udc00": 1}, id="key"),
        pytest.param([{"deep": "x\udfff"}], id="nested"),
    ],
)
async def test_a_lone_surrogates_in_json_are_refused(
    store: EventStore, dsn: str, value: Any
) -> None:
    """Item A: payload and metadata strings and keys must be valid UTF-8."""
    bad = Bucket(id="payload")
    bad.apply(Opaque(value=value))
    await _refused(store, dsn, bad, match="payload")
    meta = Bucket(id="meta")
    meta.apply(Opaque(metadata={"m": value}))
    with pytest.raises(SerializationError, match="metadata"):
        await store.save(meta)
    await assert_state(dsn, 1)


# -- B: the payload limit counts bytes -----------------------------------------------------------


async def test_b_payload_limit_counts_utf8_bytes(dsn: str) -> None:
    """Item B: 900 emoji are 3,600 bytes, over a 1,000-byte limit (they used to pass)."""
    async with await EventStore.create(dsn, max_payload_bytes=1000) as store:
        bucket = Bucket(id="emoji")
        bucket.apply(Blob(data="\N{GRINNING FACE}" * 900))
        with pytest.raises(PayloadTooLargeError) as info:
            await store.save(bucket)
        assert info.value.size > 3600 and info.value.limit == 1000
        meta = Bucket(id="meta")
        meta.apply(Blob(data="", metadata={"m": "\N{GRINNING FACE}" * 300}))
        with pytest.raises(PayloadTooLargeError):
            await store.save(meta)
        await assert_state(dsn, 0)


# -- C: timestamps and payload values that would not load back equal ----------------------------

UTC_MINUS_5 = timezone(timedelta(hours=-5))
UTC_PLUS_5 = timezone(timedelta(hours=5))


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(datetime.max.replace(tzinfo=UTC), id="max"),
        pytest.param(datetime.min.replace(tzinfo=UTC), id="min"),
        pytest.param(datetime(9999, 12, 31, 20, tzinfo=UTC_MINUS_5), id="past-max-in-utc"),
        pytest.param(datetime(1, 1, 1, 1, tzinfo=UTC_PLUS_5), id="before-min-in-utc"),
        pytest.param(datetime(2020, 1, 1), id="naive"),
    ],
)
async def test_c_timestamps_outside_the_range_are_refused(
    store: EventStore, dsn: str, timestamp: datetime
) -> None:
    """Item C: datetime.max/min are stored as +-infinity and load back naive (load fails)."""
    bad = Counter(id="ts")
    event = bad.increment()
    event.timestamp = timestamp
    await _refused(store, dsn, bad, match="timestamp")


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime.max.replace(tzinfo=UTC) - timedelta(microseconds=1),
        datetime.min.replace(tzinfo=UTC) + timedelta(microseconds=1),
        datetime(9999, 12, 31, 18, 59, tzinfo=UTC_MINUS_5),
        datetime(1, 1, 1, 5, 1, tzinfo=UTC_PLUS_5),
    ],
    ids=str,
)
async def test_c_timestamps_at_the_edges_load_back_equal(
    store: EventStore, timestamp: datetime
) -> None:
    """Item C: the safe range is every instant strictly between datetime.min and max (UTC)."""
    counter = Counter(id="edge")
    counter.apply(Incremented(timestamp=timestamp))
    await store.save(counter)
    (loaded,) = await store.load_events("edge")
    assert loaded.timestamp == timestamp


class Stamped(Event):
    when: datetime


class StampBucket(Aggregate):
    def apply_stamped(self, event: Stamped) -> None:
        pass

    def apply_aliased(self, event: Aliased) -> None:
        pass

    def apply_nested_reading(self, event: NestedReading) -> None:
        pass

    def apply_camel_cased(self, event: CamelCased) -> None:
        pass

    def apply_choices(self, event: Choices) -> None:
        pass

    def apply_written_as(self, event: WrittenAs) -> None:
        pass

    def apply_shadowing(self, event: Shadowing) -> None:
        pass

    def apply_strict_names(self, event: Event) -> None:
        pass

    def apply_strict_validation_alias(self, event: Event) -> None:
        pass


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(seconds=30),
        timedelta(hours=1, microseconds=5),
        timedelta(microseconds=1),  # written as "Z" (found by the round-trip property)
        timedelta(seconds=-1),  # written as "-00:00"
    ],
    ids=str,
)
async def test_c_payload_datetime_with_sub_minute_offset_is_refused(
    store: EventStore, dsn: str, offset: timedelta
) -> None:
    """Item C: JSON keeps offsets to the minute, so such a datetime would load back moved."""
    bad = StampBucket(id="offset")
    bad.apply(Stamped(when=datetime(1850, 1, 1, tzinfo=timezone(offset))))
    await _refused(store, dsn, bad, match="(?s)when.*offset")


async def test_c_payload_datetime_with_minute_offset_loads_back_equal(store: EventStore) -> None:
    """Item C: ordinary offsets (and naive datetimes) round-trip."""
    for i, when in enumerate([datetime(1, 1, 1, tzinfo=UTC_MINUS_5), datetime(2020, 2, 29)]):
        bucket = StampBucket(id=f"fine-{i}")
        saved = bucket.apply(Stamped(when=when))
        await store.save(bucket)
        (loaded,) = await store.load_events(f"fine-{i}")
        assert isinstance(loaded, Stamped) and loaded.when == when
        assert loaded.model_dump() == saved.model_dump()


class Aliased(Event):
    display_name: str = Field(alias="displayName")
    count: int = Field(default=0, alias="Count")


async def test_c_aliased_fields_load_back_equal(store: EventStore) -> None:
    """Item C: a field with an alias was dumped by name, validated by alias: it failed to load."""
    bucket = StampBucket(id="alias")
    saved = bucket.apply(Aliased(displayName="Ann", Count=3))
    await store.save(bucket)
    (loaded,) = await store.load_events("alias")
    assert isinstance(loaded, Aliased)
    assert loaded.display_name == "Ann" and loaded.count == 3
    assert loaded.model_extra == {}
    assert loaded.model_dump() == saved.model_dump()


class CamelCased(Event):
    """An alias generator also renames the envelope fields."""

    model_config = ConfigDict(alias_generator=to_camel)
    display_name: str
    child: Reading | None = None


class Choices(Event):
    picked: int = Field(validation_alias=AliasChoices("Picked", "p"))


class WrittenAs(Event):
    """Written under "Amount", read from "amount": would never load."""

    amount: int = Field(serialization_alias="Amount")


class StrictNames(Event):
    """Envelope fields get camelCase aliases but may not load by name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False)
    display_name: str


class StrictValidationAlias(Event):
    model_config = ConfigDict(populate_by_name=False)
    picked: int = Field(validation_alias="Picked")


class Shadowing(Event):
    """Written under "user_id", which the stored envelope column overwrites on load."""

    who: str = Field(alias="user_id")


async def test_c_alias_generator_and_validation_aliases_load_back_equal(
    store: EventStore,
) -> None:
    """Item C: a class with an alias generator (envelope under camelCase aliases too) and a
    field with only a validation alias both load back equal."""
    bucket = StampBucket(id="camel")
    first = bucket.apply(CamelCased(displayName="Ann", child=Reading(value=2.5)))
    second = bucket.apply(Choices(p=7))
    await store.save(bucket)
    loaded = await store.load_events("camel")
    assert [type(e) for e in loaded] == [CamelCased, Choices]
    for saved, back in zip([first, second], loaded, strict=True):
        assert back.model_dump(exclude={"global_position", "recorded_at"}) == saved.model_dump(
            exclude={"global_position", "recorded_at"}
        )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: WrittenAs(amount=5), "(?s)amount.*'Amount'"),
        (lambda: Shadowing(user_id="ann"), "(?s)who.*'user_id'.*envelope"),
        (lambda: StrictNames(displayName="Ann"), "(?s)envelope field.*populate_by_name"),
        (lambda: StrictValidationAlias(Picked=1), "(?s)picked.*'Picked'"),
    ],
    ids=[
        "serialization-alias-only",
        "alias-of-an-envelope-field",
        "envelope-aliases-without-populate-by-name",
        "validation-alias-without-populate-by-name",
    ],
)
async def test_c_payload_keys_that_cannot_load_back_are_refused(
    store: EventStore, dsn: str, make: Any, match: str
) -> None:
    """Item C: a payload key validation does not read back (or that the envelope overwrites)
    would store an event that never loads, or loads changed."""
    bad = StampBucket(id="keys")
    bad.apply(make())
    await _refused(store, dsn, bad, match=match)


class Reading(BaseModel):
    value: float


class NestedReading(Event):
    reading: Reading
    readings: list[Reading] = Field(default_factory=list)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
async def test_c_non_finite_float_in_a_nested_model_is_refused(
    store: EventStore, dsn: str, value: float
) -> None:
    """Item C: a nested model's own config writes NaN/inf as null, which then failed every
    load of the aggregate (found by the round-trip property)."""
    bad = StampBucket(id="nested")
    bad.apply(NestedReading(reading=Reading(value=1.0), readings=[Reading(value=value)]))
    await _refused(store, dsn, bad, match="(?s)readings.*non-finite")
    meta = StampBucket(id="meta")
    meta.apply(NestedReading(reading=Reading(value=1.0), metadata={"r": Reading(value=value)}))
    with pytest.raises(SerializationError, match="metadata"):
        await store.save(meta)
    await assert_state(dsn, 1)


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(10**4300, "digits", id="int-4301-digits"),
        pytest.param(-(10**140000), "digits", id="int-beyond-numeric"),
        pytest.param(_nested(210), "nest", id="nested-210"),
    ],
)
async def test_c_json_that_would_not_load_back_is_refused(
    store: EventStore, dsn: str, value: Any, match: str
) -> None:
    """Item C: an int of more than 4300 digits (PostgreSQL's numeric refuses 131072) and JSON
    nested deeper than 200 levels were stored (or raised a driver error), then every load
    failed: the JSON parser refuses them."""
    bad = Bucket(id="deep")
    bad.apply(Opaque(value=value))
    await _refused(store, dsn, bad, match=match)
    meta = Bucket(id="meta")
    meta.apply(Opaque(metadata={"m": value}))
    with pytest.raises(SerializationError, match="metadata"):
        await store.save(meta)
    await assert_state(dsn, 1)


async def test_c_json_at_the_limits_loads_back(store: EventStore) -> None:
    """Item C: 4300 digits and 199 levels under the payload object are fine."""
    values = [10**4299, -(10**4299), _nested(199)]
    bucket = Bucket(id="limits")
    for value in values:
        bucket.apply(Opaque(value=value, metadata={"m": value} if value != values[2] else {}))
    await store.save(bucket)
    loaded = await store.load_events("limits")
    assert [e.value for e in loaded] == values  # type: ignore[attr-defined]


# -- D: JSON numbers ----------------------------------------------------------------------------

FLOATS = [1e16, 4.036228521324338e16, -1e20, 1.5e300, 5e-324, 0.1, 1e15, 2.0**53, -0.0]


async def test_d_typed_floats_load_back_exactly(store: EventStore) -> None:
    """Item D: jsonb keeps numbers as numeric and writes 1e16 as 10000000000000000; a float
    field turns that back into the same float. -0.0 comes back as 0.0 (no negative zero)."""
    bucket = Bucket(id="floats")
    for value in FLOATS:
        bucket.apply(Measured(reading=value))
    await store.save(bucket)
    loaded = [e.reading for e in await store.load_events("floats")]  # type: ignore[attr-defined]
    assert [repr(v) for v in loaded] == [repr(v) for v in FLOATS[:-1]] + ["0.0"]
    assert all(type(v) is float for v in loaded)


async def test_d_floats_in_any_and_metadata_come_back_as_json_numbers(store: EventStore) -> None:
    """Item D (the documented rule): in Any-typed fields and metadata, an integral float of
    magnitude >= 1e16 comes back as the int of its digits, -0.0 as 0.0, others as floats."""
    bucket = Bucket(id="loose")
    bucket.apply(Opaque(value=FLOATS, metadata={"m": FLOATS}))
    await store.save(bucket)
    (loaded,) = await store.load_events("loose")
    expected = [
        10**16, 40362285213243380, -(10**20), int("15" + "0" * 299), 5e-324, 0.1, 1e15,
        2.0**53, 0.0,
    ]
    for back in (loaded.value, loaded.metadata["m"]):  # type: ignore[attr-defined]
        assert [(type(v), v) for v in back] == [(type(v), v) for v in expected]
        assert [float(v) for v in back] == FLOATS  # float() gives every saved value back


# -- E: NUL detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [r"C:\u0000dir", "\\\\u0000", "\\" * 3 + "u0000", "\\" * 4 + "u0000"],
    ids=repr,
)
async def test_e_backslash_u0000_text_is_stored(store: EventStore, text: str) -> None:
    """Item E: a backslash followed by "u0000" is ordinary text, not a NUL."""
    bucket = Bucket(id="path")
    bucket.apply(Blob(data=text, metadata={text: text}))
    await store.save(bucket)
    (loaded,) = await store.load_events("path")
    assert loaded.data == text  # type: ignore[attr-defined]
    assert loaded.metadata == {text: text}


@pytest.mark.parametrize("text", ["\x00", "\\\x00", "\\\\\x00", "a\\" + "\x00"], ids=repr)
async def test_e_real_nul_after_backslashes_is_refused(
    store: EventStore, dsn: str, text: str
) -> None:
    """Item E: a real NUL is still found whatever precedes it."""
    bad = Bucket(id="nul")
    bad.apply(Blob(data=text))
    await _refused(store, dsn, bad, match="NUL")


# -- A: ids that used to be fine stay fine -------------------------------------------------------


async def test_a_empty_optional_ids_are_still_stored(store: EventStore) -> None:
    """Item A: the new text checks keep accepting "" for user, causation and correlation ids
    (it was stored and loaded back before)."""
    counter = Counter(id="empty-ids")
    event = counter.increment()
    event.user_id = event.causation_id = event.correlation_id = ""
    await store.save(counter)
    (loaded,) = await store.load_events("empty-ids")
    assert (loaded.user_id, loaded.causation_id, loaded.correlation_id) == ("", "", "")


@pytest.mark.parametrize("version", [None, "1", 1.0, 2**31 + 5], ids=repr)
async def test_a_bad_aggregate_version_attribute_is_refused(
    store: EventStore, dsn: str, version: object
) -> None:
    """Item A: an aggregate whose version is not an int (it raised a TypeError) or past int4."""
    bad = Counter(id="bad-version")
    bad.increment()
    bad.version = version  # type: ignore[assignment]
    await _refused(store, dsn, bad, match="version")


async def test_c_payloads_stored_by_field_name_still_load(store: EventStore) -> None:
    """Item C: rows written before payloads were stored by alias hold the field name; those
    still load into the aliased class (Event sets populate_by_name)."""

    class Before(Event, event_type="compat.Renamed"):
        display_name: str

    class Holder(Aggregate):
        def apply_compat_renamed(self, event: Event) -> None:
            pass

    holder = Holder(id="compat")
    holder.apply(Before(display_name="Ann"))
    await store.save(holder)

    class After(Event, event_type="compat.Renamed", replace=True):
        display_name: str = Field(alias="displayName")

    (loaded,) = await store.load_events("compat")
    assert isinstance(loaded, After) and loaded.display_name == "Ann"


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda e: setattr(e, "user_id", "a\x00b"), id="nul-user-id"),
        pytest.param(lambda e: setattr(e, "event_version", 2**31), id="event-version"),
        pytest.param(
            lambda e: setattr(e, "timestamp", datetime.max.replace(tzinfo=UTC)), id="timestamp"
        ),
    ],
)
async def test_a_refused_save_does_not_fail_concurrent_saves(
    store: EventStore, dsn: str, spoil: Any
) -> None:
    """Item A: such a value used to reach the coalesced append statement, which then failed
    for every save coalesced with it; now it is refused before it joins a group."""
    aggregates = [Counter(id=f"c{i}") for i in range(6)]
    for counter in aggregates:
        counter.increment()
    spoil(aggregates[3].get_uncommitted_events()[0])
    results = await asyncio.gather(*(store.save(c) for c in aggregates), return_exceptions=True)
    assert isinstance(results[3], InvalidInputError)
    others = [r for i, r in enumerate(results) if i != 3]
    assert sorted(others) == [1, 2, 3, 4, 5]  # save() returns the position it wrote
    await assert_state(dsn, 5)
