"""Events and aggregates: the domain model applications write against.

Events are pydantic v2 models. A subclass declares its payload as ordinary fields and registers
itself under its event type (the class name unless it passes ``event_type=...``)::

    class UserRegistered(Event):
        name: str
        email: str

Aggregates rebuild their state by applying events to ``apply_<snake_case_event_type>`` methods.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import DecodeError, EventTypeConflictError, InvalidInputError, MissingHandlerError
from .personal import PersonalField, personal_fields

#: Fields every event carries; everything else on an event is its payload.
ENVELOPE_FIELDS: frozenset[str] = frozenset(
    {
        "event_id",
        "aggregate_id",
        "aggregate_type",
        "event_type",
        "event_version",
        "aggregate_version",
        "global_position",
        "timestamp",
        "causation_id",
        "correlation_id",
        "user_id",
        "metadata",
        "recorded_at",
    }
)

_registry: dict[str, type[Event]] = {}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """An immutable fact about an aggregate. Subclass it and declare payload fields.

    Class keywords: ``event_type="Name"`` registers under another name than the class name;
    ``replace=True`` lets a class take over an event type another class already registered.
    Redefining the same class (same module and qualified name) replaces it silently.
    """

    # NaN/Infinity must reach the JSON encoder as floats so it rejects them; pydantic's default
    # ("null") would silently store a NaN held in an Any-typed field or in metadata as null.
    # Payloads are stored by alias (as validation reads them); populate_by_name lets fields that
    # only have a validation alias, and the envelope under an alias_generator, load by name.
    model_config = ConfigDict(
        extra="allow",
        validate_assignment=False,
        ser_json_inf_nan="constants",
        populate_by_name=True,
    )

    __event_type__: ClassVar[str] = "Event"
    #: The current schema version of this class's payload (``class X(Event, event_version=2)``):
    #: new events carry it, and stored events of older versions are upcast to it on read.
    __event_version__: ClassVar[int] = 1
    #: True when the class declared ``event_version=``: only then is a stored version newer
    #: than it refused (an undeclared class reads every version, as before versions existed).
    __versioned__: ClassVar[bool] = False
    #: True for the example domain types (:mod:`eventuali_pg.examples_domain`): they register
    #: only when no application class holds their name, and an application class replaces them.
    __example_type__: ClassVar[bool] = False
    #: True when the class overrides :meth:`get_event_type` (set at class creation).
    __custom_event_type__: ClassVar[bool] = False

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    aggregate_id: str = ""
    aggregate_type: str = ""
    event_type: str = ""
    event_version: int = 1
    aggregate_version: int = 0
    global_position: int | None = None
    timestamp: AwareDatetime = Field(default_factory=_utc_now)
    causation_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    recorded_at: AwareDatetime | None = None

    # Not a pydantic private attribute: those cost every event an initialisation. Set on the
    # rare undecodable event only (object.__setattr__, in its __dict__), read through the class
    # default otherwise.
    _decode_error: ClassVar[DecodeError | None] = None
    # Likewise, set on an event an upcaster changed: the version it is stored at.
    _stored_event_version: ClassVar[int | None] = None
    # Likewise, set on an event whose personal fields were erased (their subject forgotten).
    _erased_fields: ClassVar[frozenset[str]] = frozenset()
    #: The personal fields of the class (see :mod:`eventuali_pg.personal`), set when the
    #: class is defined; empty for most classes, which then pay nothing for erasure.
    __personal__: ClassVar[tuple[PersonalField, ...]] = ()
    __personal_declared__: ClassVar[tuple[Any, str | None]] = (None, None)

    def __init_subclass__(
        cls,
        *,
        event_type: str | None = None,
        replace: bool = False,
        example: bool = False,
        event_version: int | None = None,
        personal: Iterable[str] | None = None,
        personal_subject: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.__personal_declared__ = (personal, personal_subject)
        if event_version is not None and (
            isinstance(event_version, bool)
            or not isinstance(event_version, int)
            or not 1 <= event_version <= 2**31 - 1
        ):
            raise InvalidInputError(
                f"event_version of {cls.__qualname__} must be an integer >= 1, got "
                f"{event_version!r}"
            )
        cls.__event_version__ = event_version if event_version is not None else 1
        cls.__versioned__ = event_version is not None
        name = event_type if event_type is not None else cls.__name__
        if not name or not isinstance(name, str):
            raise InvalidInputError(f"event_type of {cls.__qualname__} must be a non-empty string")
        cls.__event_type__ = name
        cls.__example_type__ = example
        cls.__custom_event_type__ = _overrides_get_event_type(cls)
        existing = _registry.get(name)
        if example and existing is not None and not _same_definition(existing, cls):
            return  # an application's own class of that name wins over the example type
        if existing is not None and existing.__example_type__ and not example:
            replace = True  # ... also when the example type was registered first
        if existing is not None and not replace and not _same_definition(existing, cls):
            double = _imported_twice(existing, cls)
            if double is not None:
                raise EventTypeConflictError(
                    f"event type {name!r} is defined twice because {double} was loaded twice: "
                    f"once as the script being run (module '__main__') and once imported under "
                    "its module name (by uvicorn 'module:app', or an import of itself). The two "
                    "copies define two classes. Start the server with the module's name "
                    "(`uvicorn module:app`, or `uvicorn.run(\"module:app\")` from a separate "
                    "script) instead of running that file, and move the `python file.py` entry "
                    "point to its own module"
                )
            raise EventTypeConflictError(
                f"event type {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; "
                f"{cls.__module__}.{cls.__qualname__} cannot claim it too. Give one of them "
                f"another name with `class {cls.__name__}(Event, event_type='...')`, or pass "
                "`replace=True` to take the name over deliberately"
            )
        _registry[name] = cls

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Find the class's personal fields once its fields are complete."""
        super().__pydantic_init_subclass__(**kwargs)
        declared, subject = cls.__dict__.get("__personal_declared__", (None, None))
        cls.__personal__ = personal_fields(cls, declared, subject)

    if not TYPE_CHECKING:  # keeps the pydantic plugin's typed __init__ for type checkers

        def __init__(self, /, **data: Any) -> None:
            # Only construction comes here; rows decoded from the store skip it (and its cost).
            _upstream_values(type(self), data)
            super().__init__(**data)

        # Tells pydantic this is not a custom __init__ to call while validating (RootModel
        # does the same), so decoding stays one call into pydantic-core.
        __init__.__pydantic_base_init__ = True

    def model_post_init(self, context: Any, /) -> None:
        """Default ``event_type`` to the class's registered type (or its get_event_type()), and
        ``event_version`` to the class's schema version."""
        version = type(self).__event_version__
        if version != 1 and "event_version" not in self.model_fields_set:
            self.event_version = version
        if not self.event_type:
            if type(self).__custom_event_type__:
                self.event_type = self.get_event_type()
            else:
                self.event_type = type(self).__event_type__

    @classmethod
    def get_event_type(cls) -> str:
        """The event type this class is registered under (the class name unless renamed).

        A subclass may override it (as a classmethod or a plain method, as upstream eventuali
        allows); :meth:`Aggregate.apply` then stamps the event with the override's result, and
        events of that type load as this class.
        """
        return cls.__event_type__

    def to_dict(self) -> dict[str, Any]:
        """Every field (envelope and payload) as a dict of Python values (``model_dump()``)."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build an event from a dict such as :meth:`to_dict` returns (UUID causation and
        correlation ids become text; a naive timestamp is refused)."""
        data = dict(data)
        _upstream_values(cls, data)
        return cls.model_validate(data)

    def to_json(self) -> str:
        """The event as a JSON string (``model_dump_json()``)."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, json_str: str | bytes) -> Self:
        """Build an event from JSON such as :meth:`to_json` returns."""
        return cls.model_validate_json(json_str)

    @property
    def decode_error(self) -> DecodeError | None:
        """Why this stored event could not be read as its registered class, else None.

        Such an event is delivered as a generic :class:`Event` with every stored field kept
        (payload fields as plain JSON values), so one unreadable row never stalls a reader.
        """
        return self._decode_error

    @property
    def erased_fields(self) -> frozenset[str]:
        """Names of the personal fields erased because their subject was forgotten (they
        read as their erased form, e.g. ``"[erased]"``); empty for every other event."""
        return self._erased_fields

    @property
    def stored_event_version(self) -> int:
        """The ``event_version`` the event is stored at (lower than ``event_version`` when
        upcasters brought it up to date on the way out)."""
        stored = self._stored_event_version
        return stored if stored is not None else self.event_version

    def payload(self) -> dict[str, Any]:
        """The event's own data (every field that is not part of the envelope), JSON-ready,
        under the same (alias) keys as stored."""
        return self.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS), by_alias=True)


def _same_definition(a: type, b: type) -> bool:
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def _imported_twice(a: type, b: type) -> str | None:
    """The file that defines both classes when one copy is the ``__main__`` script and the
    other the same file imported by its module name; None otherwise."""
    if a.__qualname__ != b.__qualname__ or "__main__" not in (a.__module__, b.__module__):
        return None
    files = []
    for module_name in (a.__module__, b.__module__):
        module = sys.modules.get(module_name)
        path = getattr(module, "__file__", None)
        if path is None:
            return None
        files.append(os.path.realpath(path))
    return files[0] if files[0] == files[1] else None


def event_class_for(event_type: str) -> type[Event] | None:
    """The event class registered under ``event_type`` in this process, if any."""
    return _registry.get(event_type)


def registered_event_types() -> dict[str, type[Event]]:
    """A copy of the registry: event type name to event class."""
    return dict(_registry)


def event_from_row(event_type: str, data: dict[str, Any]) -> Event:
    """Validate ``data`` (payload and envelope in one dict) as the class of ``event_type``.

    Raises pydantic's ``ValidationError`` when the data does not fit the class.
    """
    cls = _registry.get(event_type, Event)
    return cls.__pydantic_validator__.validate_python(data)  # type: ignore[no-any-return]


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_IDENTIFIER = re.compile(r"[^0-9a-zA-Z_]+")


def snake_case(name: str) -> str:
    """``UserEmailChanged`` -> ``user_email_changed`` (also ``user.email-changed``)."""
    return _NOT_IDENTIFIER.sub("_", _CAMEL_BOUNDARY.sub("_", name)).strip("_").lower()


def _new_aggregate_id() -> str:
    return str(uuid.uuid4())


class Aggregate(BaseModel):
    """An entity whose state is the result of applying its events in order.

    Subclasses declare their state as fields and one ``apply_<snake_case_event_type>`` method per
    event type. Command methods build an event and pass it to :meth:`apply`, which records it as
    uncommitted until :meth:`EventStore.save` writes it. ``aggregate_type`` defaults to the class
    name; set the class attribute to change it.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    aggregate_type: ClassVar[str] = ""
    #: Take a snapshot of the state after a save that crosses a multiple of this many events
    #: (``class User(Aggregate, snapshot_every=50)``); None: never.
    snapshot_every: ClassVar[int | None] = None
    #: Version of the snapshot's shape: snapshots of another version are ignored.
    snapshot_version: ClassVar[int] = 1

    id: str = Field(default_factory=_new_aggregate_id)
    version: int = 0

    _uncommitted: list[Event] = PrivateAttr(default_factory=list)
    _persisted: bool = PrivateAttr(default=False)

    def __init_subclass__(
        cls,
        *,
        snapshot_every: int | None = None,
        snapshot_version: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        settings = {"snapshot_every": snapshot_every, "snapshot_version": snapshot_version}
        for name, value in settings.items():
            if value is None:
                continue
            # snapshot_version is stored in an integer column: up to 2^31 - 1
            highest = 2**31 - 1 if name == "snapshot_version" else None
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 1
                or (highest is not None and value > highest)
            ):
                bound = f" and <= {highest}" if highest is not None else ""
                raise InvalidInputError(
                    f"{name} of {cls.__qualname__} must be an integer >= 1{bound}, got {value!r}"
                )
            setattr(cls, name, value)
        if "aggregate_type" not in cls.__dict__:
            cls.aggregate_type = cls.__name__

    @classmethod
    def get_aggregate_type(cls) -> str:
        """The aggregate type stored with this aggregate's events."""
        return cls.aggregate_type or cls.__name__

    def apply(self, event: Event) -> Event:
        """Record a new event: stamp it with this aggregate, change state, keep it uncommitted.

        Returns the stamped event. Raises :class:`MissingHandlerError` naming the method it
        looked for when the aggregate has no handler for the event type.
        """
        if type(event).__custom_event_type__:
            _stamp_event_type(event)
        if isinstance(event.timestamp, datetime) and event.timestamp.tzinfo is None:
            from .compat.values import refuse_naive

            refuse_naive(event.timestamp, what=f"{event.event_type} timestamp")  # assigned later
        if isinstance(event.causation_id, uuid.UUID):  # assigned after creation: not validated
            event.causation_id = str(event.causation_id)
        if isinstance(event.correlation_id, uuid.UUID):
            event.correlation_id = str(event.correlation_id)
        handler = self._handler_for(event)
        event.aggregate_id = self.id
        event.aggregate_type = self.get_aggregate_type()
        event.aggregate_version = self.version + 1
        handler(event)
        self.version = event.aggregate_version
        self._uncommitted.append(event)
        return event

    def replay(self, event: Event) -> None:
        """Apply an already stored event (no stamping, not recorded as uncommitted)."""
        self._handler_for(event)(event)
        self.version = event.aggregate_version

    def _handler_for(self, event: Event) -> Any:
        names = handler_names(event.event_type)
        for method in names:
            handler = getattr(self, method, None)
            if handler is not None and callable(handler):
                return handler
        alternative = f" (or {names[1]})" if len(names) > 1 else ""
        raise MissingHandlerError(
            f"{type(self).__name__} has no method {names[0]}(self, event){alternative} to apply "
            f"{event.event_type!r} events; define it on the aggregate class"
        )

    def _apply_event(self, event: Event) -> None:
        """Upstream eventuali's internal name: stamp and apply ``event`` without recording it
        as uncommitted (what a rebuild does). Prefer :meth:`apply` or :meth:`replay`."""
        if type(event).__custom_event_type__:
            _stamp_event_type(event)
        handler = self._handler_for(event)
        event.aggregate_id = self.id
        event.aggregate_type = self.get_aggregate_type()
        event.aggregate_version = self.version + 1
        handler(event)
        self.version = event.aggregate_version

    def is_new(self) -> bool:
        """True for an aggregate never saved nor loaded (version 0, not persisted)."""
        return not self._persisted and self.version == 0

    def to_dict(self) -> dict[str, Any]:
        """The aggregate's state (id, version and declared fields) as a dict."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild an aggregate from :meth:`to_dict` output; it counts as persisted."""
        aggregate = cls.model_validate(data)
        aggregate._persisted = True
        return aggregate

    @property
    def uncommitted_events(self) -> list[Event]:
        """Events applied since the last save, oldest first (a copy)."""
        return list(self._uncommitted)

    def has_uncommitted_events(self) -> bool:
        """True when there are events waiting to be saved."""
        return bool(self._uncommitted)

    def get_uncommitted_events(self) -> list[Event]:
        """Events applied since the last save, oldest first (a copy)."""
        return list(self._uncommitted)

    def mark_events_as_committed(self) -> None:
        """Forget the uncommitted events (the store calls this after a successful save)."""
        self._uncommitted.clear()
        self._persisted = True

    def _mark_committed(self, event_ids: set[int]) -> None:
        # Only the events that were saved (by object identity): events applied while the save
        # was in flight stay uncommitted.
        self._uncommitted = [e for e in self._uncommitted if id(e) not in event_ids]

    @classmethod
    def from_events(cls, events: Iterable[Event], **initial: Any) -> Self:
        """Rebuild an aggregate by replaying stored events, oldest first.

        The aggregate id comes from the first event unless given. With no events and no id,
        an :class:`InvalidInputError` is raised since there would be nothing to rebuild from.
        """
        iterator = iter(events)
        first = next(iterator, None)
        if first is None:
            if "id" not in initial:
                raise InvalidInputError(
                    f"{cls.__name__}.from_events() got no events; pass id=... to start empty"
                )
            return cls(**initial)
        aggregate = cls(**{"id": first.aggregate_id, **initial})
        aggregate._persisted = True
        aggregate.replay(first)
        for event in iterator:
            aggregate.replay(event)
        return aggregate


def _stamp_event_type(event: Event) -> None:
    """Stamp ``event`` with its class's ``get_event_type()`` override, as upstream eventuali's
    apply does, and let events of that type load as this class when the name is free."""
    name = event.get_event_type()
    if not isinstance(name, str) or not name:
        raise InvalidInputError(
            f"{type(event).__qualname__}.get_event_type() must return a non-empty string, "
            f"got {name!r}"
        )
    event.event_type = name
    if name not in _registry:
        _registry[name] = type(event)


def upstream_snake_case(name: str) -> str:
    """Upstream eventuali's handler naming: ``_`` before every capital
    (``HTTPRequestSent`` -> ``h_t_t_p_request_sent``)."""
    return "".join(
        ("_" + char.lower()) if char.isupper() and index > 0 else char.lower()
        for index, char in enumerate(name)
    )


@functools.lru_cache(maxsize=4096)
def handler_names(event_type: str) -> tuple[str, ...]:
    """Method names an aggregate may define for ``event_type``, in the order they are tried:
    ``apply_<snake_case>`` (``HTTPRequestSent`` -> ``apply_http_request_sent``), then upstream
    eventuali's spelling (``apply_h_t_t_p_request_sent``) when it differs. Cached: every
    ``apply`` and every replayed event asks."""
    first = f"apply_{snake_case(event_type)}"
    upstream = f"apply_{upstream_snake_case(event_type)}"
    if upstream != first and upstream.isidentifier():
        return (first, upstream)
    return (first,)


_BASE_GET_EVENT_TYPE = Event.get_event_type.__func__  # type: ignore[attr-defined]


def _overrides_get_event_type(cls: type[Event]) -> bool:
    return getattr(cls.get_event_type, "__func__", cls.get_event_type) is not _BASE_GET_EVENT_TYPE


def _upstream_values(cls: type[Event], data: dict[str, Any]) -> None:
    """Values upstream eventuali accepts, at construction: UUID causation and correlation ids
    become text (as they are stored), and a naive timestamp is refused with the fix."""
    for key in ("causation_id", "correlation_id"):
        value = data.get(key)
        if isinstance(value, uuid.UUID):
            data[key] = str(value)
    if "timestamp" in data and cls.model_fields["timestamp"].annotation is AwareDatetime:
        from .compat.values import refuse_naive

        try:
            refuse_naive(data["timestamp"], what=f"{cls.__name__}.timestamp")
        except InvalidInputError as exc:  # a ValidationError, as pydantic's own refusal is
            detail = InitErrorDetails(
                type=PydanticCustomError("timezone_aware", "{message}", {"message": str(exc)}),
                loc=("timestamp",),
                input=data["timestamp"],
            )
            raise ValidationError.from_exception_data(cls.__name__, [detail]) from None


def aggregate_type_of(cls: type[Aggregate]) -> str | None:
    """The aggregate type ``cls`` stores its events under; None when only an instance can tell
    and none can be made without data.

    ``get_aggregate_type`` is a classmethod here; upstream eventuali's classes override it as a
    plain method, which needs an instance: one is made without validation to ask it.
    """
    try:
        return cls.get_aggregate_type()
    except TypeError:
        try:
            return str(cls.model_construct().get_aggregate_type())
        except Exception:  # an __init__ or property that needs real data: no answer
            return None

