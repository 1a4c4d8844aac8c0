"""Issue 16 items C and D: save() accepts only what load() gives back equal (hypothesis).

Random events (envelope and payload) go through a real PostgreSQL store. Each one is either
refused by ``save`` with an ``InvalidInputError`` before anything is written, or loads back
equal to what was saved, under these stated rules (item D, also in the README):

* typed fields (``str``, ``int``, ``float``, ``bool``, ``datetime``, ``UUID``, ``Decimal``,
  nested models, lists, dicts, aliased fields) load back as the same types and values; the one
  exception is a float ``-0.0``, which loads back as ``0.0`` (equal under ``==``): jsonb numbers
  have no negative zero;
* ``Any``-typed fields and ``metadata`` hold JSON values: an integral float of magnitude at
  least 1e16 (pydantic writes it with an exponent, ``4.036228521324338e+16``) loads back as the
  ``int`` of those digits (``40362285213243380``: ``float()`` of it is the saved float, but it
  is not ``==`` to it), and ``-0.0`` as ``0.0``;
* aware datetimes load back as the same instant (their offset may be spelled differently);
* the timestamp, like every aware datetime, is compared as an instant.
"""

from __future__ import annotations

import enum
import itertools
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import pytest
from helpers.db import table_state
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from eventuali_pg import Aggregate, Event, EventStore, InvalidInputError


class Child(BaseModel):
    name: str
    score: float
    camel_case: int = Field(alias="camelCase")
    tags: list[str] = []


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


class Anything(Event):
    text: str | None = None
    number: int | None = None
    real: float | None = None
    flag: bool | None = None
    when: datetime | None = None
    ident: uuid.UUID | None = None
    amount: Decimal | None = None
    child: Child | None = None
    children: list[Child] = Field(default_factory=list)
    numbers: list[int] = Field(default_factory=list)
    table: dict[str, float] = Field(default_factory=dict)
    loose: Any = None
    renamed: str = Field(default="", alias="renamedField")
    span: timedelta | None = None
    day: date | None = None
    clock: time | None = None
    pair: tuple[int, str] | None = None
    bag: frozenset[str] = frozenset()
    raw: bytes | None = None
    colour: Colour | None = None
    mode: Literal["a", "b"] = "a"


class CamelAnything(Anything):
    """The same fields under an alias generator, which renames the envelope fields too."""

    model_config = ConfigDict(alias_generator=to_camel)


class Holder(Aggregate):
    def apply_anything(self, event: Anything) -> None:
        pass

    def apply_camel_anything(self, event: CamelAnything) -> None:
        pass


# -- strategies ------------------------------------------------------------------------------

# Mostly text PostgreSQL takes; sometimes NUL characters and lone surrogates, which it refuses.
clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
wild_text = st.text(st.characters(codec=None, exclude_categories=()))
texts = st.one_of(clean_text, clean_text, clean_text, wild_text)
names = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1),
    wild_text.filter(bool),
    st.text(st.sampled_from("é€😀"), min_size=300, max_size=600),  # around the 1024-byte limit
)

offsets = st.one_of(
    st.just(UTC),
    st.integers(min_value=-1439, max_value=1439).map(lambda m: timezone(timedelta(minutes=m))),
    # offsets in seconds: fine for the timestamp, refused in a payload datetime
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone),
    st.timezones(),
)
aware = st.datetimes(timezones=offsets)  # every year from 1 to 9999: extremes included
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, 1e16, -1e20, 1.5e300, 5e-324, 2.0**53, 1e15]
)
ints = (
    st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    # around the 4300 digits the JSON parser reads back (the values themselves have no repr)
    | st.tuples(st.sampled_from([4299, 4300, 5000]), st.sampled_from([1, -1])).map(
        lambda t: t[1] * 10 ** t[0]
    )
)
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
children = st.builds(
    Child,
    name=texts,
    score=floats,
    camelCase=ints,
    tags=st.lists(texts, max_size=3),
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "text": texts,
        "number": ints,
        "real": floats,
        "flag": st.booleans(),
        "when": aware | st.datetimes(),
        "ident": st.uuids(),
        "amount": st.decimals(allow_nan=False, allow_infinity=False),
        "child": children,
        "children": st.lists(children, max_size=3),
        "numbers": st.lists(ints, max_size=5),
        "table": st.dictionaries(texts, floats, max_size=3),
        "loose": json_values,
        "renamedField": texts,
        "span": st.timedeltas(),
        "day": st.dates(),
        "clock": st.times(timezones=st.none() | offsets),
        "pair": st.tuples(ints, texts),
        "bag": st.frozensets(texts, max_size=3),
        "raw": st.binary(max_size=20),
        "colour": st.sampled_from(Colour),
        "mode": st.sampled_from(["a", "b"]),
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": aware,
        "event_version": st.integers(min_value=-2, max_value=2**31 + 1) | st.just(2**31 - 1),
        "user_id": st.none() | st.just("") | names,
        "causation_id": st.none() | names,
        "correlation_id": st.none() | names,
        "metadata": st.dictionaries(texts, json_values, max_size=4),
    },
)

_serial = itertools.count()


# -- the expected shape after a round trip -----------------------------------------------------


def _json_number(value: float) -> float | int:
    """What a float becomes in an Any field or metadata (item D)."""
    if value == 0:
        return 0.0
    if value.is_integer() and abs(value) >= 1e16:
        # written as 4.036228521324338e+16, stored as the numeric 40362285213243380: an int
        # that float() turns back into the same float, but not equal to it
        return int(Decimal(repr(value)))
    return value


def _shape(value: Any, *, loose: bool = False) -> Any:
    """``value`` with its types spelled out, so 1 and 1.0 (and -0.0 and 0.0) differ; aware
    datetimes become their UTC instant. ``loose`` applies the JSON number rules of item D."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if loose:
            value = _json_number(value)
            if isinstance(value, int):
                return ("int", value)
        return ("float", repr(0.0 if value == 0 else value))  # jsonb has no -0
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, datetime):
        return ("datetime", value.astimezone(UTC) if value.utcoffset() is not None else value)
    if isinstance(value, dict):
        return {k: _shape(v, loose=loose) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v, loose=loose) for v in value]
    return (type(value).__name__, value)


def _comparable(event: Event) -> dict[str, Any]:
    data = event.model_dump(exclude={"global_position", "recorded_at"})
    return {
        key: _shape(value, loose=key in ("loose", "metadata")) for key, value in data.items()
    }


# -- the property ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def store(database_dsn: str) -> AsyncIterator[EventStore]:
    store = await EventStore.create(database_dsn)
    try:
        yield store
    finally:
        await store.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cls=st.sampled_from([Anything, CamelAnything]),
    aggregate_id=names,
    payload=payloads,
    envelope=envelopes,
)
async def test_c_d_saved_events_load_back_equal_or_are_refused(
    store: EventStore,
    database_dsn: str,
    cls: type[Anything],
    aggregate_id: str,
    payload: dict[str, Any],
    envelope: dict[str, Any],
) -> None:
    """Items C and D: save -> load_events gives the saved event back, or save refuses it with
    an InvalidInputError and writes nothing."""
    aggregate_id = f"{next(_serial)}-{aggregate_id}"
    try:
        new = cls(**payload, **envelope)
    except ValueError as exc:
        event(f"model refused: {str(exc)[:300]}")
        return  # the model itself refuses it (a naive timestamp): nothing to save
    holder = Holder(id=aggregate_id)
    saved = holder.apply(new)
    before = await table_state(database_dsn)
    try:
        await store.save(holder)
    except InvalidInputError as exc:
        event(f"refused: {type(exc).__name__}")
        assert await table_state(database_dsn) == before
        assert holder.has_uncommitted_events()
        return
    event("saved and loaded back")
    (loaded,) = await store.load_events(aggregate_id)
    assert type(loaded) is cls
    # model_dump() of both, compared type by type (plain == would hide 1 vs 1.0, and says
    # "different" for the same instant in a DST fold of a zoneinfo zone: PEP 495)
    assert _comparable(loaded) == _comparable(saved)
    assert loaded.global_position is not None and loaded.recorded_at is not None


def test_d_json_number_rules() -> None:
    """Item D: the rules the property states, spelled out."""
    assert _json_number(1e16) == 10**16 and isinstance(_json_number(1e16), int)
    assert _json_number(4.036228521324338e16) == 40362285213243380
    assert float(_json_number(4.036228521324338e16)) == 4.036228521324338e16
    assert isinstance(_json_number(1e15), float)
    assert math.copysign(1, _json_number(-0.0)) == 1
    assert _json_number(1.5) == 1.5
