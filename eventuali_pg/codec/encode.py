"""Events to rows: column arrays of the append statement, payloads encoded once as JSON."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AliasChoices, AliasPath, BaseModel
from pydantic_core import PydanticSerializationError, from_json, to_json

from ..errors import PayloadTooLargeError, SerializationError
from ..models import ENVELOPE_FIELDS, Event
from .personal import SubjectKey, encrypt_fields

_ENVELOPE: set[str] = set(ENVELOPE_FIELDS)

#: Longest integer (in digits) the JSON parser reads back (``from_json``, as Python's
#: ``int_max_str_digits``); PostgreSQL's numeric itself stops at 131,072.
MAX_JSON_INT_DIGITS = 4300
#: Deepest nesting of arrays and objects the JSON parser reads back, the payload object included.
MAX_JSON_DEPTH = 200

# A NUL character encodes as \u0000 after an even number of backslashes (the escape's own
# backslash is then the odd one); r"C:\u0000dir" encodes as "C:\\u0000dir", which is text.
_REAL_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_PLAIN = (str, int, float, bool, type(None), Decimal, uuid.UUID)
_SCALARS = frozenset({str, int, bool, type(None), Decimal, uuid.UUID})
_SAFE_TYPES = (str, int, float, bool, bytes, type(None), Decimal, uuid.UUID, date, timedelta)
# What a lossy value leaves in the JSON: a nested model writes NaN/inf as null (or as NaN /
# Infinity strings); an aware datetime or time ends in an offset, written to the minute
# (an offset that rounds to zero minutes is written "Z").
_OFFSET = re.compile(rb'(?:[+-]\d\d:\d\d(?::\d\d(?:\.\d+)?)?|\dZ)"')
_MINUTE = timedelta(minutes=1)


@dataclass
class EncodedBatch:
    """Column arrays of a batch of events, in append order."""

    event_ids: list[Any] = field(default_factory=list)
    aggregate_ids: list[str] = field(default_factory=list)
    aggregate_types: list[str] = field(default_factory=list)
    aggregate_versions: list[int] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    event_versions: list[int] = field(default_factory=list)
    payloads: list[str] = field(default_factory=list)
    causation_ids: list[str | None] = field(default_factory=list)
    correlation_ids: list[str | None] = field(default_factory=list)
    user_ids: list[str | None] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    occurred_at: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)

    def columns(self) -> tuple[list[Any], ...]:
        """The arrays in the order of the append statement's parameters ``$4..$15``."""
        return (
            self.event_ids,
            self.aggregate_ids,
            self.aggregate_types,
            self.aggregate_versions,
            self.event_types,
            self.event_versions,
            self.payloads,
            self.causation_ids,
            self.correlation_ids,
            self.user_ids,
            self.metadata,
            self.occurred_at,
        )

    def add(
        self,
        event: Event,
        *,
        max_payload_bytes: int,
        keys: Mapping[str, SubjectKey] | None = None,
    ) -> None:
        """Encode ``event`` and append its columns; raise before anything is stored if it can't.

        Personal fields (see :mod:`eventuali_pg.personal`) are encrypted with the subject
        keys in ``keys``."""
        # Fields go out under their aliases, as validation reads them back (Event sets
        # populate_by_name, so fields with only a validation alias come back by name).
        problem = _payload_key_problem(type(event))
        if problem is not None:
            raise SerializationError(f"event {event.event_type!r} cannot be stored: {problem}")
        payload = _encode_json(
            lambda: event.model_dump_json(exclude=_ENVELOPE, by_alias=True).encode(),
            event,
            "payload",
        )
        metadata = (
            _encode_json(lambda: to_json(event.metadata), event, "metadata")
            if event.metadata
            else b"{}"
        )
        _check_values(event, payload, metadata)
        if type(event).__personal__:
            payload = encrypt_fields(event, payload, keys or {})
        size = len(payload) + len(metadata)  # UTF-8 bytes, as the limit says
        if size > max_payload_bytes:
            raise PayloadTooLargeError(
                f"event {event.event_type!r} of aggregate {event.aggregate_id!r} encodes to "
                f"{size} bytes, over the store's limit of {max_payload_bytes} bytes; keep large "
                "blobs outside the event store and store a reference, or raise "
                "max_payload_bytes when creating the store",
                size=size,
                limit=max_payload_bytes,
            )
        self.event_ids.append(event.event_id)
        self.aggregate_ids.append(event.aggregate_id)
        self.aggregate_types.append(event.aggregate_type)
        self.aggregate_versions.append(event.aggregate_version)
        self.event_types.append(event.event_type)
        self.event_versions.append(event.event_version)
        self.payloads.append(str(payload, "utf-8"))
        self.causation_ids.append(event.causation_id)
        self.correlation_ids.append(event.correlation_id)
        self.user_ids.append(event.user_id)
        self.metadata.append(str(metadata, "utf-8"))
        self.occurred_at.append(event.timestamp)


def _encode_json(produce: Callable[[], bytes], event: Event, what: str) -> bytes:
    try:
        encoded = produce()
        if b"NaN" in encoded or b"Infinity" in encoded:
            # Non-finite floats come out as bare NaN/Infinity, which jsonb refuses; the same
            # letters inside a string are fine, so only a real parse can tell.
            json.loads(encoded, parse_constant=_reject_constant)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise SerializationError(
            f"the {what} of event {event.event_type!r} cannot be stored as JSON: {exc}. Use "
            "JSON-compatible field types (str, int, float, bool, None, lists, dicts, datetime, "
            "UUID, Decimal, pydantic models) and finite numbers"
        ) from exc
    if b"\\u0000" in encoded and _REAL_NUL.search(encoded):
        raise SerializationError(
            f"the {what} of event {event.event_type!r} contains a NUL character (\\u0000), "
            "which PostgreSQL's jsonb cannot store; remove it or encode the value (e.g. base64)"
        )
    if len(encoded) > MAX_JSON_INT_DIGITS or (
        encoded.count(b"[") + encoded.count(b"{") > MAX_JSON_DEPTH
    ):
        # Only then can it hold an int too long or nesting too deep for the parser that
        # reads it back; stored anyway, the event would fail every load.
        try:
            from_json(encoded)
        except ValueError as exc:
            raise SerializationError(
                f"the {what} of event {event.event_type!r} could not be read back: {exc}. "
                f"Integers are limited to {MAX_JSON_INT_DIGITS} digits (store larger ones as "
                f"strings or Decimal) and JSON to {MAX_JSON_DEPTH} nested levels"
            ) from None
    return encoded


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


def _check_values(event: Event, payload: bytes, metadata: bytes) -> None:
    """Refuse payload and metadata values JSON cannot give back equal.

    A non-finite float in a nested model (whose own config writes it as ``null``) would load
    back as None, which a float field refuses: every later load would fail. A payload datetime
    or time whose UTC offset is not a whole number of minutes would load back as another time:
    pydantic writes offsets to the minute (historical zones have offsets like +00:09:21).
    Only fields whose type can hold such a value are walked (see :func:`_fields_to_walk`),
    and only when the JSON shows a ``null``, a non-finite constant or an offset, the only
    traces those leave.
    """
    checks: list[tuple[str, Any, bool, bool]] = []
    extra = event.__pydantic_extra__
    fields = _fields_to_walk(type(event))
    if fields or extra:
        nan = _maybe_non_finite(payload)
        offsets = _OFFSET.search(payload) is not None
        if nan or offsets:
            values = [(name, getattr(event, name)) for name in fields]
            values += [(k, v) for k, v in (extra or {}).items() if k not in _ENVELOPE]
            checks.append(("payload", values, nan, offsets))
    if len(metadata) > 2 and _maybe_non_finite(metadata):
        checks.append(("metadata", list(event.metadata.items()), True, False))
    for what, pairs, nan, offsets in checks:
        for name, value in pairs:
            found = None if type(value) in _SCALARS else _lossy(value, nan, offsets)
            if found is None:
                continue
            if isinstance(found, float):
                problem = (
                    f"the non-finite number {found!r}, which JSON cannot hold; store a finite "
                    "number or None"
                )
            else:
                problem = (
                    f"{found!r}, whose UTC offset {found.utcoffset()} is not a whole number of "
                    "minutes; JSON keeps offsets to the minute, so it would load back as "
                    "another time. Convert it first, e.g. value.astimezone(UTC)"
                )
            raise SerializationError(
                f"the {what} of event {event.event_type!r} holds, in {name!r}, {problem}"
            )


def _maybe_non_finite(encoded: bytes) -> bool:
    return b"null" in encoded or b"NaN" in encoded or b"Infinity" in encoded


@functools.cache
def _fields_to_walk(cls: type[Event]) -> tuple[str, ...]:
    """The payload fields of ``cls`` whose type can hold a nested model (which writes NaN as
    null with its own config) or a datetime or time (whose offset JSON rounds), or anything."""
    return tuple(
        name
        for name, info in cls.model_fields.items()
        if name not in _ENVELOPE and _may_hide(info.annotation)
    )


def _may_hide(annotation: Any) -> bool:
    if annotation in _SAFE_TYPES:
        return False
    origin = get_origin(annotation)
    if origin is Annotated:
        return _may_hide(get_args(annotation)[0])
    if origin is Literal:
        return False
    if origin is not None:
        return any(_may_hide(arg) for arg in get_args(annotation) if arg is not Ellipsis)
    if isinstance(annotation, type):
        if issubclass(annotation, (datetime, time)):
            return True  # datetime is a date, which is safe
        return not issubclass(annotation, (*_SAFE_TYPES, enum.Enum))
    return True  # Any, a type variable, a forward reference: could hold anything


def _lossy(value: object, nan: bool, offsets: bool) -> float | datetime | time | None:
    """The first value inside ``value`` that would not load back equal, if any."""
    if isinstance(value, float):
        return value if nan and not math.isfinite(value) else None
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, (datetime, time)):
        offset = value.utcoffset()
        return value if offsets and offset is not None and offset % _MINUTE else None
    children: Any
    kind = type(value)
    if kind is list or kind is tuple:
        children = value
    elif kind is dict:
        children = [*value.keys(), *value.values()]  # type: ignore[attr-defined]
    elif isinstance(value, BaseModel):
        children = [*value.__dict__.values(), *(value.__pydantic_extra__ or {}).values()]
    elif isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = vars(value).values()
    else:
        return None
    for child in children:
        if type(child) in _SCALARS:
            continue
        found = _lossy(child, nan, offsets)
        if found is not None:
            return found
    return None


@functools.cache
def _payload_key_problem(cls: type[Event]) -> str | None:
    """Why a payload field of ``cls`` would not load back, if one would not (once per class).

    A field is written under its serialization alias (or name) and must be read back from that
    key: a serialization alias its validation does not accept loads as missing, and a key that
    is an envelope field name is overwritten by the envelope column when loading.
    """
    by_name = bool(cls.model_config.get("populate_by_name") or cls.model_config.get(
        "validate_by_name"
    ))
    for name, info in cls.model_fields.items():
        if name in _ENVELOPE:
            if not by_name and (info.alias or info.validation_alias) is not None:
                return (
                    f"envelope field {name!r} has an alias and the class sets "
                    "populate_by_name=False, but the envelope loads by field name; keep "
                    "populate_by_name=True (Event's default)"
                )
            continue
        written = info.serialization_alias or name
        if written in _ENVELOPE:
            return (
                f"payload field {name!r} is stored under the key {written!r}, an envelope field "
                "name, which the envelope column overwrites when loading; give it another alias"
            )
        alias = info.validation_alias if info.validation_alias is not None else info.alias
        accepted = _validation_keys(alias)
        if by_name or alias is None:
            accepted.add(name)
        if written not in accepted:
            return (
                f"payload field {name!r} is stored under the key {written!r}, which its "
                f"validation does not read (it reads {sorted(accepted)}), so it would not load "
                f"back; use alias={written!r} for both directions, or add {written!r} to its "
                "validation_alias"
            )
    return None


def _validation_keys(alias: str | AliasChoices | AliasPath | None) -> set[str]:
    if alias is None:
        return set()
    if isinstance(alias, str):
        return {alias}
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    keys: set[str] = set()
    for choice in choices:
        if isinstance(choice, str):
            keys.add(choice)
        elif len(choice.path) == 1 and isinstance(choice.path[0], str):
            keys.add(choice.path[0])
    return keys
