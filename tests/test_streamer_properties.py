"""Model-based properties of the EventStreamer (issue 11 item 6, DESIGN.md C4).

Random sequences of subscribe / unsubscribe / close / publish (fresh, duplicate, hand-made on a
store-fed streamer) / overflow / consume run against the streamer and against a small model of
what each subscription must receive; every step compares the two.

* Pure in-memory (no store): a receiver buffers at most ``capacity`` matching events; past that
  it drops the rest and, once its buffer is drained, raises ``SubscriptionLagged`` with the exact
  number it missed, then continues live. Nothing is delivered twice or out of order, and
  nothing is lost silently: delivered + reported missed = matching published.
* Fed by a store: a receiver gets every matching stored event after its start, once each, in
  global order, however small its buffer (overflow turns into catch-up from the table), and
  its buffer never holds more than ``capacity`` plus one catch-up page.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers.streaming_domain import Order, OrderPlaced, Ticked, Ticker, User, UserRegistered
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from eventuali_pg import (
    DuplicateSubscriptionError,
    Event,
    EventStore,
    EventStreamer,
    EventStreamReceiver,
    Subscription,
    SubscriptionClosed,
    SubscriptionLagged,
    UnknownSubscriptionError,
)
from eventuali_pg.stream.receiver import MAX_CATCH_UP_PAGE, MIN_CATCH_UP_PAGE

WAIT = 10.0  # bound on one wait for a store-fed event: a failure, never a measurement

IDS = ("a", "b", "c", "d")
AGGREGATE_FILTERS: list[Any] = [None, "User", ["Order", "Ticker"]]
EVENT_FILTERS: list[Any] = [None, "UserRegistered", ("OrderPlaced", "Ticked")]


def _matches(aggregate_filter: Any, event_filter: Any, event: Event) -> bool:
    def accepts(names: Any, value: str) -> bool:
        if names is None:
            return True
        return value == names if isinstance(names, str) else value in names

    return accepts(aggregate_filter, event.aggregate_type) and accepts(
        event_filter, event.event_type
    )


def _event(kind: int, aggregate_id: str, version: int) -> Event:
    envelope: dict[str, Any] = {"aggregate_id": aggregate_id, "aggregate_version": version}
    if kind == 0:
        return UserRegistered(name="n", email="e", aggregate_type="User", **envelope)
    if kind == 1:
        return OrderPlaced(total_cents=version, aggregate_type="Order", **envelope)
    return Ticked(n=version, aggregate_type="Ticker", **envelope)


# -- pure in-memory ------------------------------------------------------------------------------


@dataclass
class ModelReceiver:
    """What one subscription of a store-less streamer must do."""

    aggregate_filter: Any
    event_filter: Any
    capacity: int
    live_since: int
    buffer: list[tuple[int, Event]] = field(default_factory=list)
    overflowed: bool = False
    missed: int = 0
    last: int = 0
    # bookkeeping for the final accounting
    matching_published: int = 0
    delivered: list[int] = field(default_factory=list)
    reported_missed: int = 0

    def offer(self, position: int, event: Event) -> None:
        if position <= self.live_since or not _matches(
            self.aggregate_filter, self.event_filter, event
        ):
            return
        self.matching_published += 1
        if self.overflowed:
            self.missed += 1
        elif len(self.buffer) < self.capacity:
            self.buffer.append((position, event))
        else:
            self.overflowed, self.missed = True, 1


subscribe_op = st.tuples(
    st.just("subscribe"),
    st.sampled_from(IDS),
    st.integers(0, len(AGGREGATE_FILTERS) - 1),
    st.integers(0, len(EVENT_FILTERS) - 1),
    st.sampled_from(["live", "at-head", "past", "ahead"]),
)
publish_op = st.tuples(
    st.just("publish"),
    st.integers(0, 2),  # event kind
    st.sampled_from(["next", "gap", "duplicate"]),
    st.integers(1, 20),  # how many
)
consume_op = st.tuples(st.just("consume"), st.sampled_from(IDS), st.integers(1, 12))
end_op = st.tuples(st.sampled_from(["unsubscribe", "close"]), st.sampled_from(IDS))
memory_ops = st.lists(
    st.one_of(subscribe_op, publish_op, publish_op, consume_op, consume_op, end_op),
    min_size=1,
    max_size=40,
)


async def _recv_now(receiver: EventStreamReceiver) -> Any:
    """The next event if one can be had without waiting for a publish (``timeout=0`` expires
    only once the receiver waits); raises what ``recv`` raises."""
    return await receiver.recv(timeout=0)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 6), ops=memory_ops)
async def test_in_memory_streamer_matches_its_model(
    capacity: int, ops: list[tuple[Any, ...]]
) -> None:
    streamer = EventStreamer(capacity=capacity)
    model: dict[str, ModelReceiver] = {}
    receivers: dict[str, EventStreamReceiver] = {}
    ended: list[EventStreamReceiver] = []
    head = 0
    stream_positions: dict[str, int] = {}
    versions = itertools.count(1)

    for op in ops:
        kind = op[0]
        if kind == "subscribe":
            _, sid, a, e, start = op
            subscription = Subscription(
                id=sid,
                aggregate_type_filter=AGGREGATE_FILTERS[a],
                event_type_filter=EVENT_FILTERS[e],
            )
            from_position = {"live": None, "at-head": head, "past": head - 1, "ahead": head + 3}[
                start
            ]
            if from_position is not None and from_position < 0:
                from_position = None
            if sid in model:
                with pytest.raises(DuplicateSubscriptionError):
                    await streamer.subscribe(subscription, from_position=from_position)
                continue
            if start == "past" and head > 0:
                # nothing to catch up from without a store: refused, nothing subscribed
                with pytest.raises(ValueError, match="EventStore"):
                    await streamer.subscribe(subscription, from_position=from_position)
                continue
            receivers[sid] = await streamer.subscribe(subscription, from_position=from_position)
            begin = head if from_position is None else max(head, from_position)
            model[sid] = ModelReceiver(
                AGGREGATE_FILTERS[a], EVENT_FILTERS[e], capacity, live_since=begin, last=begin
            )
        elif kind == "publish":
            _, event_kind, how, count = op
            for _ in range(count):
                position = {"next": head + 1, "gap": head + 3, "duplicate": max(head, 1)}[how]
                version = next(versions)
                aggregate_id = f"agg-{event_kind}"
                event = _event(event_kind, aggregate_id, version)
                published = await streamer.publish_event(event, version, position)
                assert published == (position > head), (how, position, head)
                if not published:
                    continue
                head = position
                stream_positions[aggregate_id] = version
                for receiver in model.values():
                    receiver.offer(position, event)
        elif kind == "consume":
            _, sid, count = op
            if sid not in model:
                continue
            mine, receiver = model[sid], receivers[sid]
            for _ in range(count):
                if mine.buffer:
                    position, event = mine.buffer.pop(0)
                    item = await _recv_now(receiver)
                    assert (item.global_position, item.event.event_id) == (
                        position,
                        event.event_id,
                    )
                    mine.last = position
                    mine.delivered.append(position)
                elif mine.overflowed:
                    with pytest.raises(SubscriptionLagged) as lagged:
                        await _recv_now(receiver)
                    assert (lagged.value.missed, lagged.value.last_position) == (
                        mine.missed,
                        mine.last,
                    )
                    mine.reported_missed += mine.missed
                    mine.overflowed, mine.missed = False, 0
                    mine.live_since = max(head, mine.last)
                else:
                    with pytest.raises(TimeoutError):
                        await _recv_now(receiver)  # nothing more: it waits
                    break
        else:
            _, sid = op
            if sid not in model:
                with pytest.raises(UnknownSubscriptionError):
                    await streamer.unsubscribe(sid)
                continue
            receiver = receivers.pop(sid)
            if kind == "unsubscribe":
                await streamer.unsubscribe(sid)
            else:
                await receiver.close()
            del model[sid]
            ended.append(receiver)

        # after every step: the same subscriptions, bounded buffers as modelled, same positions
        assert sorted(streamer.subscription_ids) == sorted(model)
        assert await streamer.get_global_position() == head
        for sid, mine in model.items():
            stats = receivers[sid].stats()
            assert stats.buffer_depth == len(mine.buffer) <= capacity
            assert stats.last_position == mine.last
        for aggregate_id, version in stream_positions.items():
            assert await streamer.get_stream_position(aggregate_id) == version

    for receiver in ended:
        assert receiver.closed
        with pytest.raises(SubscriptionClosed):
            await _recv_now(receiver)
    for mine in model.values():
        # order kept, nothing doubled, nothing lost silently
        assert mine.delivered == sorted(set(mine.delivered))
        pending = len(mine.buffer) + mine.missed
        assert len(mine.delivered) + mine.reported_missed + pending == mine.matching_published


# -- fed by a store ------------------------------------------------------------------------------


@dataclass
class FedSubscription:
    """One subscription of a store-fed streamer: it must get every matching stored event after
    ``after``, in order."""

    receiver: EventStreamReceiver
    aggregate_filter: Any
    event_filter: Any
    after: int
    delivered: list[int] = field(default_factory=list)

    def expected(self, stored: list[tuple[int, Event]]) -> list[tuple[int, Event]]:
        return [
            (position, event)
            for position, event in stored
            if position > self.after and _matches(self.aggregate_filter, self.event_filter, event)
        ]


fed_save_op = st.tuples(
    st.just("save"),
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 12)), min_size=1, max_size=3),
)
fed_subscribe_op = st.tuples(
    st.just("subscribe"),
    st.sampled_from(IDS),
    st.integers(0, len(AGGREGATE_FILTERS) - 1),
    st.integers(0, len(EVENT_FILTERS) - 1),
    st.sampled_from(["live", "start", "middle"]),
)
fed_ops = st.lists(
    st.one_of(fed_save_op, fed_save_op, fed_subscribe_op, consume_op, consume_op, end_op),
    min_size=1,
    max_size=25,
)

_serial = itertools.count()


@pytest.fixture
async def fed_store(dsn: str) -> AsyncIterator[EventStore]:
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        yield store


async def _caught_up(streamer: EventStreamer, head: int) -> None:
    async with asyncio.timeout(WAIT):
        while await streamer.get_global_position() < head:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.005)


def _new_aggregates(spec: list[tuple[int, int]]) -> list[Any]:
    aggregates: list[Any] = []
    for kind, count in spec:
        serial = next(_serial)
        if kind == 0:
            user = User(id=f"user-{serial}")
            user.register("n", "e")
            for _ in range(count - 1):
                user.change_email(f"{serial}@x")
            aggregates.append(user)
        elif kind == 1:
            order = Order(id=f"order-{serial}")
            for n in range(count):
                order.place(n)
            aggregates.append(order)
        else:
            ticker = Ticker(id=f"ticker-{serial}")
            for n in range(count):
                ticker.tick(n)
            aggregates.append(ticker)
    return aggregates


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # failures wait WAIT
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(capacity=st.integers(1, 8), ops=fed_ops)
async def test_store_fed_streamer_loses_and_doubles_nothing(
    fed_store: EventStore, capacity: int, ops: list[tuple[Any, ...]]
) -> None:
    streamer = EventStreamer(capacity=capacity)
    await fed_store.attach_streamer(streamer)
    page = min(max(capacity, MIN_CATCH_UP_PAGE), MAX_CATCH_UP_PAGE)
    try:
        base = await fed_store.get_global_position()
        await _caught_up(streamer, base)
        stored: list[tuple[int, Event]] = []
        subscriptions: dict[str, FedSubscription] = {}

        async def take(sub: FedSubscription, count: int) -> None:
            remaining = sub.expected(stored)[len(sub.delivered) :]
            for position, event in remaining[:count]:
                item = await sub.receiver.recv(timeout=WAIT)
                assert (item.global_position, item.event.event_id) == (position, event.event_id)
                sub.delivered.append(position)
            if len(remaining) <= count:
                with pytest.raises(TimeoutError):  # nothing else is stored for it
                    await sub.receiver.recv(timeout=0)

        for op in ops:
            kind = op[0]
            if kind == "save":
                aggregates = _new_aggregates(op[1])
                events = [e for a in aggregates for e in a.get_uncommitted_events()]
                await fed_store.save_all(aggregates)
                stored += [(e.global_position, e) for e in events]  # type: ignore[misc]
            elif kind == "subscribe":
                _, sid, a, e, start = op
                subscription = Subscription(
                    id=sid,
                    aggregate_type_filter=AGGREGATE_FILTERS[a],
                    event_type_filter=EVENT_FILTERS[e],
                )
                head = stored[-1][0] if stored else base
                if sid in subscriptions:
                    with pytest.raises(DuplicateSubscriptionError):
                        await streamer.subscribe(subscription)
                    continue
                if start == "live":
                    await _caught_up(streamer, head)  # "from now" is then the stored head
                    receiver = await streamer.subscribe(subscription)
                    after = head
                else:
                    after = base if start == "start" or not stored else stored[len(stored) // 2][0]
                    receiver = await streamer.subscribe(subscription, from_position=after)
                subscriptions[sid] = FedSubscription(
                    receiver, AGGREGATE_FILTERS[a], EVENT_FILTERS[e], after
                )
            elif kind == "consume":
                _, sid, count = op
                if sid in subscriptions:
                    await take(subscriptions[sid], count)
            else:
                _, sid = op
                if sid not in subscriptions:
                    with pytest.raises(UnknownSubscriptionError):
                        await streamer.unsubscribe(sid)
                    continue
                sub = subscriptions.pop(sid)
                if kind == "unsubscribe":
                    await streamer.unsubscribe(sid)
                else:
                    await sub.receiver.close()
                assert sub.receiver.closed
            for sub in subscriptions.values():
                assert sub.receiver.stats().buffer_depth <= capacity + page  # bounded memory

        for sub in subscriptions.values():
            await take(sub, len(stored))
            assert sub.delivered == [p for p, _ in sub.expected(stored)]
    finally:
        await fed_store.detach_streamer(streamer)

