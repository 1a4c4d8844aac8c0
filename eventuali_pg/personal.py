"""Personal data: payload fields stored encrypted with a key per data subject.

Mark a payload field personal with ``Annotated[..., Personal()]``, or list fields on the
class::

    class UserRegistered(Event):
        name: Annotated[str, Personal()]          # subject: the aggregate id
        email: Annotated[str, Personal()]
        plan: str                                 # not personal: stored as is

    class OrderPlaced(Event, personal=("shipping_address",), personal_subject="customer_id"):
        customer_id: str                          # the subject of the personal fields
        shipping_address: str
        total: int

The subject is the aggregate id unless ``Personal(subject="field")`` (or
``personal_subject=``) names another field whose value is the subject id (a payload field that
is not personal itself, or the envelope's ``user_id``). Each personal field is stored encrypted
with AES-256-GCM under its subject's key; ``EventStore.forget(subject_id)`` destroys the key,
after which every read gives the field's *erased form* (:func:`erased_value`) and lists it in
``event.erased_fields``.

The erased form of a field is decided once, when the class is defined: the text
:data:`ERASED` when the field accepts it (``str``, ``str | None``, ``Any``), else ``None`` when
it accepts None, else its default; a personal field with none of these (``age: int`` without
a default) is refused with :class:`InvalidInputError`, since a forgotten event would not load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from .errors import InvalidInputError

if TYPE_CHECKING:
    from .models import Event

#: What an erased text field reads as.
ERASED = "[erased]"
#: Event type of the event :meth:`EventStore.forget` appends (its payload: ``subject_id``).
FORGET_EVENT_TYPE = "eventuali_pg.SubjectForgotten"
#: The stream (aggregate id) those events are appended to.
FORGET_STREAM = "$eventuali_pg.forgotten"
#: Their aggregate type.
FORGET_AGGREGATE_TYPE = "eventuali_pg"

#: Envelope fields a personal field may name as its subject.
_ENVELOPE_SUBJECTS = frozenset({"aggregate_id", "user_id"})


class Personal:
    """Marks a payload field as personal data: ``Annotated[str, Personal()]``.

    ``subject`` names the field holding the subject id (default: the aggregate id).
    """

    __slots__ = ("subject",)

    def __init__(self, subject: str | None = None) -> None:
        if subject is not None and (not isinstance(subject, str) or not subject):
            raise InvalidInputError(
                f"Personal(subject=...) names a field, a non-empty string; got {subject!r}"
            )
        self.subject = subject

    def __repr__(self) -> str:
        return f"Personal(subject={self.subject!r})"


@dataclass(frozen=True)
class PersonalField:
    """One personal field of an event class."""

    name: str
    #: The key it is stored under in the payload (its serialization alias or name).
    key: str
    #: The attribute holding its subject id; ``aggregate_id`` by default.
    subject: str
    #: What the field reads as once its subject is forgotten.
    erased: Any


def personal_fields(
    cls: type[Event], declared: Iterable[str] | None, declared_subject: str | None
) -> tuple[PersonalField, ...]:
    """The personal fields of ``cls`` (from ``Personal()`` markers and the class's
    ``personal=`` list), checked; raises :class:`InvalidInputError` for a declaration that
    cannot work. Computed once per class, when it is defined."""
    from .models import ENVELOPE_FIELDS

    listed = list(declared or ())
    if isinstance(declared, str):
        raise InvalidInputError(
            f"personal= of {cls.__qualname__} takes a list of field names, got the string "
            f"{declared!r}; write personal=({declared!r},)"
        )
    unknown = [name for name in listed if name not in cls.model_fields]
    if unknown:
        raise InvalidInputError(
            f"personal= of {cls.__qualname__} names {unknown}, which are not fields of the class"
        )
    found: list[PersonalField] = []
    for name, info in cls.model_fields.items():
        markers = [m for m in info.metadata if isinstance(m, Personal)]
        if not markers and name not in listed:
            continue
        if name in ENVELOPE_FIELDS:
            raise InvalidInputError(
                f"{cls.__qualname__}.{name} is an envelope field; only payload fields can be "
                "personal (put the personal value in a payload field)"
            )
        subject = markers[0].subject if markers else None
        subject = subject or declared_subject or "aggregate_id"
        found.append(
            PersonalField(
                name=name,
                key=info.serialization_alias or name,
                subject=subject,
                erased=_erased_form(cls, name),
            )
        )
    names = {field.name for field in found}
    for field in found:
        subject = field.subject
        if subject in _ENVELOPE_SUBJECTS:
            continue
        if subject not in cls.model_fields or subject in ENVELOPE_FIELDS:
            raise InvalidInputError(
                f"the subject of personal field {cls.__qualname__}.{field.name} is "
                f"{subject!r}, which is not a payload field of the class (nor aggregate_id or "
                "user_id)"
            )
        if subject in names:
            raise InvalidInputError(
                f"the subject of personal field {cls.__qualname__}.{field.name} is "
                f"{subject!r}, itself personal: a subject id must stay readable to find the "
                "key; keep it an ordinary field"
            )
    return tuple(found)


def _erased_form(cls: type[Event], name: str) -> Any:
    info = cls.model_fields[name]
    annotation: Any = (
        Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    )
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    for candidate in (ERASED, None):
        try:
            if adapter.validate_python(candidate) == candidate:
                return candidate
        except ValidationError:
            continue
    if info.default is not PydanticUndefined:
        return info.default
    raise InvalidInputError(
        f"personal field {cls.__qualname__}.{name} has no erased form: once its subject is "
        f"forgotten it must read as {ERASED!r}, None or a default, and its type accepts none "
        "of them. Make it optional (`... | None`: erased reads as None) or give it a default"
    )


def subject_of(event: Event, field: PersonalField) -> str:
    """The subject id of ``field`` in ``event``; :class:`InvalidInputError` when it is not a
    non-empty string (nothing is written)."""
    subject = getattr(event, field.subject, None)
    if not isinstance(subject, str) or not subject:
        raise InvalidInputError(
            f"personal field {field.name!r} of event {event.event_type!r} has the subject "
            f"{field.subject}={subject!r}; a subject id must be a non-empty string (it names "
            "the key the field is encrypted with)"
        )
    return subject


def subjects_of(events: Iterable[Event]) -> set[str]:
    """The subject ids of every personal field of ``events``."""
    subjects: set[str] = set()
    for event in events:
        for field in type(event).__personal__:
            subjects.add(subject_of(event, field))
    return subjects


def forgotten_subject(event: Event) -> str:
    """The subject id of a ``SubjectForgotten`` event (also when it decoded generically)."""
    subject = getattr(event, "subject_id", None)
    if not isinstance(subject, str):
        raise InvalidInputError(f"event {event.event_type!r} names no subject_id")
    return subject


def is_forget_event(event: Event) -> bool:
    """True for the event :meth:`EventStore.forget` appends."""
    return event.event_type == FORGET_EVENT_TYPE


__all__ = [
    "ERASED",
    "FORGET_AGGREGATE_TYPE",
    "FORGET_EVENT_TYPE",
    "FORGET_STREAM",
    "Personal",
    "PersonalField",
    "forgotten_subject",
    "is_forget_event",
    "personal_fields",
    "subject_of",
    "subjects_of",
]
