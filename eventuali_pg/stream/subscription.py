"""Subscription (what a receiver wants) and SubscriptionBuilder."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from ..models import Event
from ..store.validation import check_name_filter, check_position

NameFilter = str | Collection[str] | None


#: The consumer name in metrics and spans of every subscription whose id was generated.
GENERATED_TELEMETRY_NAME = "(generated)"


def _generated_id() -> str:
    return f"sub-{uuid.uuid4().hex[:12]}"


@dataclass
class Subscription:
    """Which events a receiver gets, and from where.

    ``aggregate_type_filter`` and ``event_type_filter`` take one name, a collection of names, or
    None for all. ``id`` is generated when not given (read it back from ``subscription.id`` to
    unsubscribe). ``from_position=N`` first catches up on every matching event after global
    position N, then continues live; None means live from now. ``from_timestamp=t`` (a
    timezone-aware datetime) does the same from the first event recorded at or after ``t``: the
    streamer resolves it to a position with a store query when subscribing.
    """

    id: str | None = None
    aggregate_type_filter: NameFilter = None
    event_type_filter: NameFilter = None
    from_position: int | None = None
    from_timestamp: datetime | None = None
    aggregate_types: frozenset[str] | None = field(init=False, repr=False)
    event_types: frozenset[str] | None = field(init=False, repr=False)
    #: The consumer name in metrics and spans when not the id (a projection runner's receiver
    #: reports under the runner's subscription id, not its per-session one).
    _telemetry_name: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.from_position, datetime) and self.from_timestamp is None:
            # upstream eventuali's fourth positional argument is from_timestamp
            self.from_timestamp, self.from_position = self.from_position, None
        if self.id is None:
            self.id = _generated_id()
            # One consumer name for every generated id: metrics stay a bounded set of series.
            self._telemetry_name = GENERATED_TELEMETRY_NAME
        elif not isinstance(self.id, str) or not self.id:
            raise_invalid_id(self.id)
        aggregate_types = check_name_filter(
            self.aggregate_type_filter, what="aggregate_type_filter"
        )
        event_types = check_name_filter(self.event_type_filter, what="event_type_filter")
        self.aggregate_types = frozenset(aggregate_types) if aggregate_types else None
        self.event_types = frozenset(event_types) if event_types else None
        if self.from_position is not None:
            check_position(self.from_position, what="from_position")
        if self.from_timestamp is not None:
            from ..compat.streaming import check_from_timestamp

            check_from_timestamp(self.from_timestamp, self.from_position)

    def to_dict(self) -> dict[str, Any]:
        """The subscription's settings as a dict (the keys upstream eventuali uses, plus
        ``from_position``); unset ones are left out, ``from_timestamp`` is ISO 8601."""
        from ..compat.streaming import subscription_dict

        return subscription_dict(self)

    @property
    def subscription_id(self) -> str:
        """The subscription's id (generated when none was given)."""
        assert self.id is not None
        return self.id

    def matches(self, event: Event) -> bool:
        """True when ``event`` passes both filters."""
        return (self.aggregate_types is None or event.aggregate_type in self.aggregate_types) and (
            self.event_types is None or event.event_type in self.event_types
        )


def raise_invalid_id(value: object) -> None:
    """Reject a subscription id that is not a non-empty string."""
    from ..errors import InvalidInputError

    raise InvalidInputError(f"subscription id must be a non-empty string or None, got {value!r}")


class SubscriptionBuilder:
    """Fluent construction of a :class:`Subscription`; filters given twice accumulate."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._aggregate_types: list[str] = []
        self._event_types: list[str] = []
        self._from_position: int | None = None
        self._from_timestamp: datetime | None = None

    def with_id(self, subscription_id: str) -> Self:
        """Name the subscription."""
        self._id = subscription_id
        return self

    def filter_by_aggregate_type(self, aggregate_type: str | Collection[str]) -> Self:
        """Keep only events of this aggregate type (or these types)."""
        self._aggregate_types += _names(aggregate_type, "aggregate type")
        return self

    def filter_by_event_type(self, event_type: str | Collection[str]) -> Self:
        """Keep only events of this event type (or these types)."""
        self._event_types += _names(event_type, "event type")
        return self

    def from_position(self, position: int) -> Self:
        """Catch up on every matching event after global position ``position`` first."""
        self._from_position = check_position(position, what="from_position")
        return self

    def from_timestamp(self, timestamp: datetime) -> Self:
        """Catch up on every matching event recorded at or after ``timestamp`` first."""
        from ..compat.streaming import check_from_timestamp

        self._from_timestamp = check_from_timestamp(timestamp, None)
        return self

    def build(self) -> Subscription:
        """The subscription described so far."""
        return Subscription(
            id=self._id,
            aggregate_type_filter=list(self._aggregate_types) or None,
            event_type_filter=list(self._event_types) or None,
            from_position=self._from_position,
            from_timestamp=self._from_timestamp,
        )


def _names(value: str | Collection[str], what: str) -> list[str]:
    names = check_name_filter(value, what=what)
    if names is None:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"{what} must be a name or a collection of names, got None")
    return names
