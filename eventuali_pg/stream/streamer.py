"""EventStreamer: fan-out of published events to filtered, bounded receivers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigurationError,
    DuplicateSubscriptionError,
    InvalidInputError,
    PositionBeyondHeadError,
    StreamerClosedError,
    UnknownSubscriptionError,
)
from ..models import Event
from ..store.validation import check_aggregate_id, check_position
from .receiver import EventStreamReceiver, ReceiverStats
from .source import EventSource
from .stream_event import StreamEvent
from .subscription import Subscription

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.stream")


@dataclass(frozen=True)
class StreamerStats:
    """A snapshot of a streamer's figures and those of each of its receivers."""

    global_position: int
    published: int
    duplicates_ignored: int
    receivers: tuple[ReceiverStats, ...]


class EventStreamer:
    """Publishes events to subscribers, each through its own bounded receiver.

    ``capacity`` is the size of every receiver's buffer. Publishing never waits: a receiver
    whose buffer is full catches up from the attached store (or, with none, raises
    :class:`SubscriptionLagged` once its buffer is drained). Attach the streamer to a store with
    ``EventStore.create(dsn, streamer=streamer)`` or ``await store.attach_streamer(streamer)`` and
    every saved event is published here, in global order, exactly once.
    """

    def __init__(self, capacity: int = 1000) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidInputError(
                f"capacity must be an integer >= 1 (events buffered per receiver), got {capacity!r}"
            )
        self._capacity = capacity
        self._receivers: dict[str, EventStreamReceiver] = {}
        # Each receiver's _offer, bound once: the publish loop is the hot path of a fan-out.
        self._offers: tuple[Callable[[StreamEvent], None], ...] = ()
        self._head = 0
        self._stream_positions: dict[str, int] = {}
        self._source: EventSource | None = None
        self._published = 0
        self._duplicates = 0
        self._warned_hand_publish = False
        self._closed = False

    @property
    def capacity(self) -> int:
        """Buffer size of each receiver."""
        return self._capacity

    @property
    def subscription_ids(self) -> list[str]:
        """Ids of the active subscriptions."""
        return list(self._receivers)

    # -- subscriptions --------------------------------------------------------------------------

    async def subscribe(
        self, subscription: Subscription, from_position: int | None = None
    ) -> EventStreamReceiver:
        """Start delivering events matching ``subscription``; returns its receiver.

        With ``from_position=N`` (or ``subscription.from_position``) the receiver first gets
        every matching event after global position N from the attached store, then continues
        live with no gap and no duplicate. Without it, delivery starts with the next event
        published. Raises :class:`DuplicateSubscriptionError` if the id is already active,
        :class:`InvalidInputError` when ``from_position`` and ``subscription.from_position`` are
        both given and differ, :class:`PositionBeyondHeadError` when N is beyond the attached
        store's head (no event has that position yet), and :class:`StreamerClosedError` after
        :meth:`close`.
        """
        if not isinstance(subscription, Subscription):
            raise InvalidInputError(
                f"subscribe() takes a Subscription, got {type(subscription).__name__}"
            )
        if self._closed:
            raise StreamerClosedError(
                "this EventStreamer is closed (its receivers were ended by close()); create a "
                "new EventStreamer and attach it to the store to subscribe again"
            )
        explicit = from_position is not None
        if from_position is None:
            from_position = subscription.from_position
        else:
            check_position(from_position, what="from_position")
            if subscription.from_position not in (None, from_position):
                raise InvalidInputError(
                    f"subscription {subscription.subscription_id!r} says from_position="
                    f"{subscription.from_position} but subscribe() was given from_position="
                    f"{from_position}; give the starting position in one place only"
                )
        if from_position is not None and from_position > self._head and self._source is not None:
            store_head = await self._source.get_global_position()
            if from_position > store_head:
                raise PositionBeyondHeadError(
                    f"cannot start subscription {subscription.subscription_id!r} after position "
                    f"{from_position}: the store's head is {store_head}, so no event has that "
                    "position yet. Start at a position you received (an event's "
                    "global_position), at 0 for the whole history, or leave from_position out "
                    "to receive only new events",
                    position=from_position,
                    head=store_head,
                )
        subscription_id = subscription.subscription_id
        previous = self._receivers.get(subscription_id)
        if previous is not None and previous.subscription is not subscription:
            raise DuplicateSubscriptionError(
                f"a subscription with id {subscription_id!r} is already active; unsubscribe it "
                "first or choose another id"
            )
        if previous is not None:
            # The same Subscription object again (a processor re-subscribing after its receiver
            # failed): the old receiver ends and the new one resumes after its last event.
            del self._receivers[subscription_id]
            self._receivers_changed()
            previous._end()
            if not explicit:
                from_position = previous._last if self._source is not None else None
        elif from_position is None and subscription.from_timestamp is not None:
            from ..compat.streaming import position_for_timestamp

            from_position = await position_for_timestamp(self._source, subscription)
        head = self._head
        start = head if from_position is None else from_position
        if start < head and self._source is None:
            raise ConfigurationError(
                f"cannot start subscription {subscription_id!r} at position {start}: the streamer "
                f"has already published up to {head} and has no store to catch up from; attach "
                "it to an EventStore (EventStore.create(dsn, streamer=streamer))"
            )
        receiver = EventStreamReceiver(
            self, subscription, capacity=self._capacity, start_after=start
        )
        self._receivers[subscription_id] = receiver
        self._receivers_changed()
        receiver._join_live(head)
        return receiver

    async def unsubscribe(self, subscription_id: str) -> None:
        """Stop delivery to a subscription; its receiver's iteration ends.

        Raises :class:`UnknownSubscriptionError` when no active subscription has this id.
        """
        receiver = self._receivers.pop(subscription_id, None)
        if receiver is None:
            raise UnknownSubscriptionError(
                f"no active subscription with id {subscription_id!r}; active ids: "
                f"{sorted(self._receivers) or 'none'}"
            )
        self._receivers_changed()
        receiver._end()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    async def close(self) -> None:
        """End every receiver of this streamer at once and stop following its store.

        Each receiver's ``async for`` ends cleanly and ``recv()`` raises
        :class:`SubscriptionClosed`; later ``subscribe`` calls raise
        :class:`StreamerClosedError`. The store stays open. Use it to end every live stream
        when a server shuts down (the web integration calls it on SIGTERM). Idempotent.
        """
        self._closed = True
        source = self._source
        if source is not None:
            from ..store.event_store import EventStore

            if isinstance(source, EventStore):
                await self.detach(source)
                return
            self._detach_source(source)
        receivers = list(self._receivers.values())
        self._receivers.clear()
        self._receivers_changed()
        for receiver in receivers:
            receiver._end()

    def _remove(self, subscription_id: str, receiver: EventStreamReceiver) -> None:
        if self._receivers.get(subscription_id) is receiver:
            del self._receivers[subscription_id]
            self._receivers_changed()

    def _receivers_changed(self) -> None:
        self._offers = tuple(receiver._offer for receiver in self._receivers.values())

    # -- positions ------------------------------------------------------------------------------

    async def get_global_position(self) -> int:
        """The highest global position published so far (0 before any)."""
        return self._head

    async def get_stream_position(self, stream_id: str) -> int | None:
        """The last stream position (aggregate version) published for aggregate ``stream_id``,
        None if none was published."""
        check_aggregate_id(stream_id)
        if self._source is not None:
            if self._head == 0:
                return None
            return await self._source.get_stream_position_at(stream_id, self._head)
        return self._stream_positions.get(stream_id)

    # -- publishing -----------------------------------------------------------------------------

    async def publish_event(self, event: Event, stream_position: int, global_position: int) -> bool:
        """Publish one event by hand. A global position at or below the last published one is
        ignored as a duplicate (returns False).

        With a store attached, the store's feed publishes every saved event and alone moves
        the position: a hand publish is then ignored (returns False; logged once), so a bridge
        written for a store-less streamer keeps working and a hand-made position above the
        store's head cannot silence the streamer.
        """
        if (
            type(stream_position) is not int
            or type(global_position) is not int
            or stream_position < 1
            or global_position < 1
            or (type(event) not in _EVENT_CLASSES and not _is_event(event))
        ):
            _reject_publish(event, stream_position, global_position)
        if self._source is not None:
            if global_position > self._head and not self._warned_hand_publish:
                self._warned_hand_publish = True
                logger.warning(
                    "publish_event on a streamer that follows an EventStore is ignored: the "
                    "store's feed publishes every saved event itself"
                )
            self._duplicates += 1
            return False
        # _publish inlined (a store-less streamer): this is the whole cost of a publish.
        if global_position <= self._head:
            self._duplicates += 1
            return False
        self._head = global_position
        self._published += 1
        self._stream_positions[event.aggregate_id] = stream_position
        # StreamEvent's __init__ only assigns its three slots: done here without the call,
        # about half the cost of building one (tests/test_stream_batches.py checks they agree).
        item = _new_stream_event(StreamEvent)
        item.event = event
        item.stream_position = stream_position
        item.global_position = global_position
        for offer in self._offers:
            offer(item)
        return True

    def _publish(self, item: StreamEvent) -> bool:
        """Offer ``item`` to every receiver unless its position was already published."""
        if item.global_position <= self._head:
            self._duplicates += 1
            return False
        self._head = item.global_position
        self._published += 1
        if self._source is None:
            self._stream_positions[item.event.aggregate_id] = item.stream_position
        for offer in self._offers:
            offer(item)
        return True

    def _publish_many(self, items: Iterable[StreamEvent]) -> None:
        for item in items:
            self._publish(item)

    # -- store attachment -----------------------------------------------------------------------

    async def attach(self, store: EventStore) -> None:
        """Follow ``store``: every event it saves (from any process) is published here, in
        global order, exactly once (same as ``await store.attach_streamer(streamer)``)."""
        from .feed import feed_of

        if self._closed:
            raise StreamerClosedError(
                "this EventStreamer is closed; attach a new EventStreamer to the store"
            )
        feed = await feed_of(store)
        self._attach_source(store, feed.published_position)
        feed.add(self)

    async def detach(self, store: EventStore) -> None:
        """Stop following ``store``; every receiver of this streamer ends."""
        from .feed import FEED_RESOURCE

        feed: Any = store.existing_resource(FEED_RESOURCE)
        if feed is not None:
            feed.remove(self)
        self._detach_source(store)

    def _attach_source(self, source: EventSource, head: int) -> None:
        if self._source is not None and self._source is not source:
            raise ConfigurationError(
                "this streamer is already attached to another EventStore; a streamer follows one "
                "store (one global order). Create another EventStreamer for the second store"
            )
        if self._head > head:
            raise ConfigurationError(
                f"this streamer has already published up to position {self._head}, beyond the "
                f"store's head {head}; attach a fresh EventStreamer"
            )
        self._source = source
        self._head = head
        self._stream_positions.clear()

    def _detach_source(self, source: EventSource) -> None:
        if self._source is not source:
            return
        self._source = None
        receivers = list(self._receivers.values())
        self._receivers.clear()
        self._receivers_changed()
        for receiver in receivers:
            receiver._end()

    def stats(self) -> StreamerStats:
        """Published count, head, and every receiver's figures."""
        return StreamerStats(
            global_position=self._head,
            published=self._published,
            duplicates_ignored=self._duplicates,
            receivers=tuple(receiver.stats() for receiver in self._receivers.values()),
        )


_new_stream_event = object.__new__

#: Classes whose instances passed ``isinstance(event, Event)`` (a set lookup is cheaper).
_EVENT_CLASSES: set[type] = set()


def _is_event(value: object) -> bool:
    if isinstance(value, Event):
        _EVENT_CLASSES.add(type(value))
        return True
    return False


def _reject_publish(event: object, stream_position: object, global_position: object) -> None:
    if not isinstance(event, Event):
        raise InvalidInputError(f"publish_event() takes an Event, got {type(event).__name__}")
    for name, value in (("stream_position", stream_position), ("global_position", global_position)):
        if type(value) is not int or value < 1:
            raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
