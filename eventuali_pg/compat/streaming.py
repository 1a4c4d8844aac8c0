"""Upstream eventuali's streaming extras: :class:`SagaHandler` and ``from_timestamp``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidInputError
from ..models import Event
from .values import refuse_naive

if TYPE_CHECKING:
    from ..stream.subscription import Subscription


class SagaHandler:
    """Base class for a long-running workflow (saga) that reacts to events (upstream's name).

    Override :meth:`handle_event`; feed it from a receiver (``async for stream_event in
    receiver: await saga.handle_event(stream_event.event)``) or wrap it in a
    :class:`~eventuali_pg.Projection` to get checkpoints, retries and dead letters.
    """

    async def handle_event(self, event: Event) -> None:
        """React to one event (issue commands, save aggregates)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement async handle_event(self, event)"
        )


def check_from_timestamp(timestamp: object, from_position: int | None) -> datetime:
    """A subscription's ``from_timestamp``: a timezone-aware datetime, not combined with
    ``from_position``."""
    if not isinstance(timestamp, datetime):
        raise InvalidInputError(
            f"from_timestamp must be a timezone-aware datetime, got {timestamp!r}"
        )
    refuse_naive(timestamp, what="from_timestamp")
    if from_position is not None:
        raise InvalidInputError(
            "give a subscription from_position or from_timestamp, not both "
            f"(got {from_position} and {timestamp.isoformat()})"
        )
    return timestamp


def subscription_dict(subscription: Subscription) -> dict[str, Any]:
    """``Subscription.to_dict()``: the settings that are set, ``from_timestamp`` as ISO 8601."""
    result: dict[str, Any] = {"id": subscription.id}
    for key in ("aggregate_type_filter", "event_type_filter", "from_position"):
        value = getattr(subscription, key)
        if value is not None:
            result[key] = value if isinstance(value, (str, int)) else list(value)
    if subscription.from_timestamp is not None:
        result["from_timestamp"] = subscription.from_timestamp.isoformat()
    return result


async def position_for_timestamp(source: object, subscription: Subscription) -> int:
    """The global position to catch up from for ``subscription.from_timestamp``: the position
    before the first event recorded at or after it (a query on the attached store)."""
    timestamp = subscription.from_timestamp
    assert timestamp is not None
    resolve = getattr(source, "position_before_timestamp", None)
    if resolve is None:
        raise ConfigurationError(
            f"subscription {subscription.id!r} starts from_timestamp={timestamp.isoformat()}, "
            "which needs a store to look the time up in; attach the streamer to an EventStore "
            "(EventStore.create(dsn, streamer=streamer)) or subscribe live without it"
        )
    return int(await resolve(timestamp))
