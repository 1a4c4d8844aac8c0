"""Upcasting: stored events of an older payload version read as the current class.

A class declares the current schema version of its payload, and functions turn each older
version into the next one::

    class UserRegistered(Event, event_version=3):
        name: str
        email: str
        marketing: bool

    @upcaster("UserRegistered", from_version=1)
    def split_name(payload: dict) -> dict:        # version 1 -> 2
        ...

    @upcaster("UserRegistered", from_version=2)
    def add_marketing(payload: dict) -> dict:     # version 2 -> 3
        return {**payload, "marketing": False}

The chain is applied, in order, to the stored payload before the class validates it, on every
read path (they all decode through :mod:`eventuali_pg.codec`): loads, reads by position,
catch-up, live delivery (events written at the same moment by a process still running the old
code included), projections, dead-letter retries and the command line. Stored rows are never
rewritten. An upcaster may also rename the type: ``@upcaster("UserCreated", from_version=1,
to_event_type="UserRegistered")`` turns version 1 of ``UserCreated`` into version 2 of
``UserRegistered``, whose chain then goes on.

A failing upcaster (it raises, returns something other than a dict, or produces a payload the
class refuses), or a stored version newer than the class knows (old code reading new events),
gives the event as a generic ``Event`` with ``decode_error`` set, like any stored event that
does not fit its class (see :mod:`eventuali_pg.codec.decode`). :func:`check_upcasters` reports
incomplete chains; ``EventStore.create`` calls it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import InvalidInputError, UpcasterError
from .models import event_class_for, registered_event_types

__all__ = ["Upcaster", "check_upcasters", "registered_upcasters", "upcaster"]

Payload = dict[str, Any]
F = TypeVar("F", bound=Callable[[Payload], Payload])


@dataclass(frozen=True)
class Upcaster:
    """One step: version ``from_version`` of ``event_type`` to version ``from_version + 1``
    of ``to_event_type``."""

    event_type: str
    from_version: int
    to_event_type: str
    function: Callable[[Payload], Payload]


_upcasters: dict[tuple[str, int], Upcaster] = {}


def upcaster(
    event_type: str, from_version: int, *, to_event_type: str | None = None
) -> Callable[[F], F]:
    """Register the decorated ``payload dict -> payload dict`` function as the step from
    ``from_version`` of ``event_type`` to the next version (of ``to_event_type`` when the type
    is renamed). Registering a second step for the same type and version raises
    :class:`UpcasterError`; a function of the same module and name replaces itself (a module
    imported again)."""
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInputError(
            f"upcaster event_type must be a non-empty string, got {event_type!r}"
        )
    if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
        raise InvalidInputError(
            f"upcaster from_version must be an integer >= 1, got {from_version!r}"
        )
    target = event_type if to_event_type is None else to_event_type
    if not isinstance(target, str) or not target:
        raise InvalidInputError(
            f"upcaster to_event_type must be a non-empty string, got {to_event_type!r}"
        )

    def register(function: F) -> F:
        if not callable(function):
            raise InvalidInputError(f"an upcaster must be a function, got {function!r}")
        key = (event_type, from_version)
        existing = _upcasters.get(key)
        if existing is not None and not _same_function(existing.function, function):
            raise UpcasterError(
                f"{event_type!r} version {from_version} already has an upcaster "
                f"({_name(existing.function)}); {_name(function)} cannot be a second one. One "
                "step per version: chain them (from_version=1, then 2, ...)"
            )
        _upcasters[key] = Upcaster(event_type, from_version, target, function)
        return function

    return register


def registered_upcasters() -> list[Upcaster]:
    """Every registered step, by type and version."""
    return [_upcasters[key] for key in sorted(_upcasters)]


def has_upcaster(event_type: str, version: int) -> bool:
    """True when a step from ``version`` of ``event_type`` is registered (the decoder's test)."""
    return (event_type, version) in _upcasters


def upcast(event_type: str, version: int, payload: Any) -> tuple[str, int, Payload]:
    """Apply the chain from ``version`` of ``event_type``: the final type, version and payload.

    Raises ``ValueError`` naming the step when a step fails or returns no dict.
    """
    while True:
        step = _upcasters.get((event_type, version))
        if step is None:
            return event_type, version, payload
        try:
            result = step.function(dict(payload))
        except Exception as exc:
            raise ValueError(
                f"upcaster {_name(step.function)} ({event_type!r} version {version} -> "
                f"{version + 1}) raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, dict):
            raise ValueError(
                f"upcaster {_name(step.function)} ({event_type!r} version {version} -> "
                f"{version + 1}) returned a {type(result).__name__}, not a dict"
            )
        event_type, version, payload = step.to_event_type, version + 1, result


def check_upcasters() -> None:
    """Raise :class:`UpcasterError` naming every incomplete chain: a class at version n > 1
    with a missing step below n, or an upcaster whose chain ends at a type no class handles."""
    problems: list[str] = []
    for name, cls in sorted(registered_event_types().items()):
        current = cls.__event_version__
        missing = [v for v in range(1, current) if (name, v) not in _upcasters]
        # a rename into this type enters its chain at the version after the renamed step
        entries = [
            step.from_version + 1
            for step in _upcasters.values()
            if step.to_event_type == name and step.event_type != name
        ]
        missing = [v for v in missing if not any(entry <= v for entry in entries)]
        if missing:
            problems.append(
                f"{cls.__qualname__} ({name!r}) is at event_version {current} but has no "
                f"upcaster from version {', '.join(map(str, missing))}: add "
                f"@upcaster({name!r}, from_version={missing[0]})"
            )
    for step in registered_upcasters():
        end_type, end_version = step.to_event_type, step.from_version + 1
        while (end_type, end_version) in _upcasters:
            following = _upcasters[(end_type, end_version)]
            end_type, end_version = following.to_event_type, end_version + 1
        target = event_class_for(end_type)
        if target is None:
            problems.append(
                f"upcaster {_name(step.function)} ({step.event_type!r} version "
                f"{step.from_version}) leads to {end_type!r} version {end_version}, which no "
                "event class in this process handles: define the class, or remove the upcaster"
            )
        elif end_version > target.__event_version__:
            problems.append(
                f"upcaster {_name(step.function)} leads to {end_type!r} version {end_version}, "
                f"newer than its class {target.__qualname__} (event_version "
                f"{target.__event_version__}): declare `event_version={end_version}` on the class"
            )
    if problems:
        raise UpcasterError("incomplete upcaster chains: " + "; ".join(problems))


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    return getattr(a, "__module__", None) == getattr(b, "__module__", None) and getattr(
        a, "__qualname__", None
    ) == getattr(b, "__qualname__", None)


def _name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', function)}"
