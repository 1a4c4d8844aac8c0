"""The store-less publish path (``EventStreamer.publish_event``): what it builds without calling
``StreamEvent.__init__``, its cached checks, and the receivers it offers to following every
subscribe, unsubscribe, close and re-subscribe."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from helpers.streaming_domain import Ticked

from eventuali_pg import Event, EventStreamer, InvalidInputError, StreamEvent, Subscription

WAIT = 30.0


def tick_event(n: int) -> Event:
    return Ticked(n=n, aggregate_id="ticker-1", aggregate_type="Ticker", aggregate_version=n)


async def test_a_published_stream_event_is_what_its_constructor_builds() -> None:
    # publish_event fills the three slots itself: a fourth field or a __post_init__ would
    # need it to call the constructor again.
    assert [field.name for field in dataclasses.fields(StreamEvent)] == [
        "event",
        "stream_position",
        "global_position",
    ]
    assert not hasattr(StreamEvent, "__post_init__")
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription())
    event = tick_event(4)
    await streamer.publish_event(event, 4, 9)
    item = await receiver.recv(timeout=WAIT)
    assert type(item) is StreamEvent
    assert item == StreamEvent(event, 4, 9)
    assert item.event is event and repr(item) == repr(StreamEvent(event, 4, 9))


async def test_the_event_check_is_not_fooled_by_a_class_seen_before() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription())
    assert await streamer.publish_event(tick_event(1), 1, 1)  # Ticked is now known
    for bad in (
        Ticked,  # the class itself, not an instance
        {"n": 2},
        tick_event(2).model_dump(),
    ):
        with pytest.raises(InvalidInputError, match="takes an Event"):
            await streamer.publish_event(bad, 2, 2)  # type: ignore[arg-type]
    for stream_position, global_position in ((True, 2), (2, True), (2.0, 2), (0, 2), (2, -1)):
        with pytest.raises(InvalidInputError):
            await streamer.publish_event(tick_event(2), stream_position, global_position)
    assert await streamer.get_global_position() == 1
    assert [(await receiver.recv(timeout=WAIT)).global_position] == [1]
    assert receiver.stats().buffer_depth == 0


async def test_every_active_receiver_and_only_those_are_offered_each_event() -> None:
    streamer = EventStreamer()
    a = await streamer.subscribe(Subscription(id="a"))
    b = await streamer.subscribe(Subscription(id="b"))
    c = await streamer.subscribe(Subscription(id="c"))
    await streamer.publish_event(tick_event(1), 1, 1)
    await streamer.unsubscribe("b")
    await c.close()
    d = await streamer.subscribe(Subscription(id="d"))
    b2 = await streamer.subscribe(Subscription(id="b"))  # the id is free again
    await streamer.publish_event(tick_event(2), 2, 2)
    got = {
        name: [item.global_position for item in await receiver.next_batch(10)]
        for name, receiver in (("a", a), ("d", d), ("b2", b2))
    }
    assert got == {"a": [1, 2], "d": [2], "b2": [2]}
    assert await b.next_batch(10) == [] and await c.next_batch(10) == []
    assert sorted(streamer.subscription_ids) == ["a", "b", "d"]

    # re-subscribing the same Subscription object replaces its receiver
    subscription = Subscription(id="again")
    first = await streamer.subscribe(subscription)
    second = await streamer.subscribe(subscription)
    await streamer.publish_event(tick_event(3), 3, 3)
    assert await first.next_batch(10) == []
    assert [item.global_position for item in await second.next_batch(10)] == [3]

    await streamer.close()
    assert streamer.subscription_ids == []
    async with asyncio.timeout(WAIT):
        assert await a.next_batch(10) == []
