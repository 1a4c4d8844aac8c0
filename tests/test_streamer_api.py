"""The EventStreamer API of the spec (DESIGN.md C4), one behaviour per test; the spec's snippets.

Most tests here are pure in-memory (no store attached, events published by hand); the spec's
snippets that use a store run on the test database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from helpers.streaming_domain import (
    Order,
    OrderPlaced,
    OrderShipped,
    Ticked,
    User,
    UserDeactivated,
    UserEmailChanged,
    UserRegistered,
    wait_until,
)

import eventuali_pg
import eventuali_pg.stream
from eventuali_pg import (
    ConfigurationError,
    DuplicateSubscriptionError,
    Event,
    EventStore,
    EventStreamer,
    EventStreamReceiver,
    InvalidInputError,
    StreamEvent,
    Subscription,
    SubscriptionBuilder,
    SubscriptionClosed,
    SubscriptionLagged,
    UnknownSubscriptionError,
)

WAIT = 30.0  # generous bound on any single wait: a failure, never a measurement


def user_event(aggregate_id: str, version: int, kind: str = "registered") -> Event:
    envelope: dict[str, Any] = {
        "aggregate_id": aggregate_id,
        "aggregate_type": "User",
        "aggregate_version": version,
    }
    if kind == "registered":
        return UserRegistered(name=f"name-{aggregate_id}", email=f"{aggregate_id}@x", **envelope)
    if kind == "email":
        return UserEmailChanged(email=f"{aggregate_id}-{version}@x", **envelope)
    return UserDeactivated(reason="test", **envelope)


def order_event(aggregate_id: str, version: int, kind: str = "placed") -> Event:
    envelope: dict[str, Any] = {
        "aggregate_id": aggregate_id,
        "aggregate_type": "Order",
        "aggregate_version": version,
    }
    if kind == "placed":
        return OrderPlaced(total_cents=100 * version, **envelope)
    return OrderShipped(**envelope)


def tick_event(n: int) -> Event:
    return Ticked(n=n, aggregate_id="ticker-1", aggregate_type="Ticker", aggregate_version=n)


def completes_without_suspending(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` one step: it must finish without ever waiting (returns its value)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine suspended: it waited for something")


async def drain(receiver: EventStreamReceiver, count: int) -> list[StreamEvent]:
    """Exactly ``count`` events; then the receiver's buffer must be empty (nothing extra)."""
    items = [await receiver.recv(timeout=WAIT) for _ in range(count)]
    assert receiver.stats().buffer_depth == 0, "more events were delivered than expected"
    return items


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, "10", 1.5, True, False, None])
def test_capacity_must_be_an_integer_of_at_least_one(capacity: Any) -> None:
    with pytest.raises(ValueError, match="capacity"):
        EventStreamer(capacity=capacity)


def test_capacity_default_and_smallest() -> None:
    assert EventStreamer().capacity == 1000
    assert EventStreamer(capacity=1).capacity == 1
    assert EventStreamer(5000).capacity == 5000


def test_streaming_alias_module_exports_the_same_objects() -> None:
    from eventuali_pg.streaming import EventStreamer as AliasStreamer
    from eventuali_pg.streaming import Subscription as AliasSubscription
    from eventuali_pg.streaming import SubscriptionBuilder as AliasBuilder

    assert AliasStreamer is EventStreamer is eventuali_pg.stream.EventStreamer
    assert AliasSubscription is Subscription
    assert AliasBuilder is SubscriptionBuilder
    import eventuali_pg.streaming as alias

    for name in ("EventStreamReceiver", "StreamEvent", "SubscriptionLagged", "SubscriptionClosed"):
        assert getattr(alias, name) is getattr(eventuali_pg, name)


# -- filters ---------------------------------------------------------------------------------------


async def test_filters_are_applied_as_string_or_collection() -> None:
    streamer = EventStreamer(capacity=100)
    subscriptions = {
        "all": Subscription(id="all"),
        "agg-str": Subscription(id="agg-str", aggregate_type_filter="User"),
        "agg-tuple": Subscription(id="agg-tuple", aggregate_type_filter=("Order", "Ticker")),
        "evt-str": Subscription(id="evt-str", event_type_filter="OrderPlaced"),
        "evt-list": Subscription(
            id="evt-list", event_type_filter=["UserRegistered", "OrderShipped"]
        ),
        "both-set": Subscription(
            id="both-set",
            aggregate_type_filter={"User"},
            event_type_filter=frozenset({"UserEmailChanged", "OrderPlaced"}),
        ),
        "nothing": Subscription(id="nothing", aggregate_type_filter=["Nope"]),
    }
    receivers = {name: await streamer.subscribe(s) for name, s in subscriptions.items()}
    events = [
        user_event("u1", 1),
        order_event("o1", 1),
        user_event("u1", 2, "email"),
        tick_event(1),
        order_event("o1", 2, "shipped"),
        user_event("u2", 1),
        order_event("o2", 1),
        user_event("u1", 3, "deactivated"),
    ]
    for position, event in enumerate(events, start=1):
        assert await streamer.publish_event(event, event.aggregate_version, position)

    def expected(keep: Any) -> list[int]:
        return [p for p, e in enumerate(events, start=1) if keep(e)]

    wanted = {
        "all": expected(lambda e: True),
        "agg-str": expected(lambda e: e.aggregate_type == "User"),
        "agg-tuple": expected(lambda e: e.aggregate_type in ("Order", "Ticker")),
        "evt-str": expected(lambda e: e.event_type == "OrderPlaced"),
        "evt-list": expected(lambda e: e.event_type in ("UserRegistered", "OrderShipped")),
        "both-set": expected(
            lambda e: e.aggregate_type == "User" and e.event_type == "UserEmailChanged"
        ),
        "nothing": [],
    }
    for name, receiver in receivers.items():
        got = [item.global_position for item in await drain(receiver, len(wanted[name]))]
        assert got == wanted[name], name
    # sanity: the filters picked different, non-trivial subsets
    assert wanted["agg-str"] == [1, 3, 6, 8] and wanted["both-set"] == [3]


def test_empty_or_malformed_filters_are_rejected() -> None:
    for bad in ([], "", [""], [1], b"User", 5):
        with pytest.raises(InvalidInputError):
            Subscription(aggregate_type_filter=bad)
        with pytest.raises(InvalidInputError):
            Subscription(event_type_filter=bad)


# -- ids, subscribe and unsubscribe ------------------------------------------------------------


async def test_generated_id_is_visible_and_works_with_unsubscribe() -> None:
    streamer = EventStreamer()
    first, second = Subscription(aggregate_type_filter="User"), Subscription()
    assert isinstance(first.id, str) and first.id
    assert first.id != second.id
    receiver = await streamer.subscribe(first)
    await streamer.subscribe(second)
    assert receiver.subscription_id == first.id == first.subscription_id
    assert receiver.subscription is first
    assert sorted(streamer.subscription_ids) == sorted([first.id, second.id])

    await streamer.unsubscribe(first.id)
    assert streamer.subscription_ids == [second.id]
    assert receiver.closed
    with pytest.raises(SubscriptionClosed):
        await receiver.recv(timeout=WAIT)


async def test_duplicate_active_id_is_rejected_but_reusable_after_unsubscribe() -> None:
    streamer = EventStreamer()
    first = await streamer.subscribe(Subscription(id="dup"))
    with pytest.raises(DuplicateSubscriptionError, match="dup"):
        await streamer.subscribe(Subscription(id="dup", aggregate_type_filter="User"))
    assert streamer.subscription_ids == ["dup"]
    assert not first.closed  # the rejected attempt did not disturb the active one

    await streamer.unsubscribe("dup")
    second = await streamer.subscribe(Subscription(id="dup"))
    assert second is not first and not second.closed
    await streamer.publish_event(user_event("u1", 1), 1, 1)
    assert (await second.recv(timeout=WAIT)).global_position == 1
    with pytest.raises(SubscriptionClosed):
        await first.recv(timeout=WAIT)

    await second.close()
    third = await streamer.subscribe(Subscription(id="dup"))  # reusable after close() too
    assert streamer.subscription_ids == ["dup"] and not third.closed


async def test_unsubscribe_ends_async_for_cleanly_and_recv_then_raises_closed() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="temp-subscription"))
    got: list[int] = []
    arrived = asyncio.Event()

    async def consume() -> str:
        async for item in receiver:
            got.append(item.global_position)
            arrived.set()
        return "loop ended"

    task = asyncio.create_task(consume())
    for position in (1, 2):
        await streamer.publish_event(user_event("u1", position), position, position)
    async with asyncio.timeout(WAIT):
        while len(got) < 2:
            arrived.clear()
            await arrived.wait()
    assert not task.done()  # waiting for more: iteration only ends on unsubscribe

    await streamer.unsubscribe("temp-subscription")
    async with asyncio.timeout(WAIT):
        assert await task == "loop ended"  # ended cleanly, no exception
    assert got == [1, 2]
    await streamer.publish_event(user_event("u1", 3), 3, 3)  # no longer delivered
    with pytest.raises(SubscriptionClosed):
        await receiver.recv(timeout=WAIT)
    with pytest.raises(UnknownSubscriptionError):  # also a LookupError
        await streamer.unsubscribe("temp-subscription")
    with pytest.raises(LookupError):
        await streamer.unsubscribe("never-existed")


async def test_subscribe_rejects_anything_but_a_subscription() -> None:
    streamer = EventStreamer()
    with pytest.raises(InvalidInputError):
        await streamer.subscribe("user-events")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await streamer.subscribe(Subscription(), from_position=-1)


async def test_catch_up_from_the_past_needs_a_store() -> None:
    streamer = EventStreamer()
    for position in (1, 2, 3):
        await streamer.publish_event(user_event("u1", position), position, position)
    with pytest.raises(ConfigurationError, match="EventStore"):
        await streamer.subscribe(Subscription(id="old", from_position=1))
    assert streamer.subscription_ids == []
    # from the current head (or beyond) there is nothing to catch up on: allowed
    receiver = await streamer.subscribe(Subscription(id="now", from_position=3))
    await streamer.publish_event(user_event("u1", 4), 4, 4)
    assert [item.global_position for item in await drain(receiver, 1)] == [4]


# -- bounded buffers, slow receivers, lag ----------------------------------------------------------


async def test_each_receiver_has_a_bounded_buffer_of_capacity_events() -> None:
    capacity = 5
    streamer = EventStreamer(capacity=capacity)
    idle = await streamer.subscribe(Subscription(id="idle"))
    for position in range(1, 4 * capacity + 1):
        await streamer.publish_event(tick_event(position), position, position)
        stats = idle.stats()
        assert stats.buffer_depth == min(position, capacity)
        assert stats.capacity == capacity
    stats = idle.stats()
    assert stats.overflows == 1 and not stats.live and stats.lag == 4 * capacity
    # the buffered events are the first `capacity` ones, in order
    assert [(await idle.recv(timeout=WAIT)).global_position for _ in range(capacity)] == list(
        range(1, capacity + 1)
    )


async def test_slow_receiver_never_blocks_publish_nor_the_others() -> None:
    capacity = 10
    streamer = EventStreamer(capacity=capacity)
    never_read = await streamer.subscribe(Subscription(id="never-read"))
    reader = await streamer.subscribe(Subscription(id="reader"))
    got: list[int] = []
    for position in range(1, 10 * capacity + 1):
        published = completes_without_suspending(
            streamer.publish_event(tick_event(position), position, position)
        )
        assert published is True
        got.append((await reader.recv(timeout=WAIT)).global_position)
    assert got == list(range(1, 10 * capacity + 1))
    assert reader.stats().overflows == 0 and reader.stats().delivered == 10 * capacity
    assert never_read.stats().buffer_depth == capacity
    assert await streamer.get_global_position() == 10 * capacity


async def test_in_memory_overflow_raises_lagged_with_missed_count_then_continues_live() -> None:
    capacity = 4
    streamer = EventStreamer(capacity=capacity)
    slow = await streamer.subscribe(Subscription(id="slow"))
    total = 10 * capacity
    for position in range(1, total + 1):
        await streamer.publish_event(tick_event(position), position, position)

    got: list[int] = []
    with pytest.raises(SubscriptionLagged) as lagged:
        async with asyncio.timeout(WAIT):
            async for item in slow:  # the buffered events first, then the lag is reported
                got.append(item.global_position)
    assert got == list(range(1, capacity + 1))
    assert lagged.value.missed == total - capacity
    assert lagged.value.last_position == capacity
    assert "slow" in str(lagged.value) and str(total - capacity) in str(lagged.value)
    assert not slow.closed and slow.stats().live

    # it continues live from the head: the next published event is the next one received
    await streamer.publish_event(tick_event(total + 1), total + 1, total + 1)
    await streamer.publish_event(tick_event(total + 2), total + 2, total + 2)
    assert [(await slow.recv(timeout=WAIT)).global_position for _ in range(2)] == [
        total + 1,
        total + 2,
    ]
    assert slow.stats().buffer_depth == 0


async def test_lagged_missed_count_counts_only_matching_events() -> None:
    streamer = EventStreamer(capacity=2)
    users = await streamer.subscribe(Subscription(id="users", aggregate_type_filter="User"))
    position = 0
    for i in range(1, 7):  # 6 user events interleaved with 6 order events
        position += 1
        await streamer.publish_event(user_event(f"u{i}", 1), 1, position)
        position += 1
        await streamer.publish_event(order_event(f"o{i}", 1), 1, position)
    assert [(await users.recv(timeout=WAIT)).global_position for _ in range(2)] == [1, 3]
    with pytest.raises(SubscriptionLagged) as lagged:
        await users.recv(timeout=WAIT)
    assert lagged.value.missed == 4


# -- positions and publish_event -------------------------------------------------------------------


async def test_positions_and_publish_event_duplicates() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="all"))
    assert await streamer.get_global_position() == 0
    assert await streamer.get_stream_position("user-stream") is None

    assert await streamer.publish_event(user_event("a", 1), 1, 1) is True
    assert await streamer.publish_event(user_event("a", 2, "email"), 2, 2) is True
    assert await streamer.publish_event(user_event("b", 1), 1, 5) is True
    assert await streamer.get_global_position() == 5
    assert await streamer.get_stream_position("a") == 2
    assert await streamer.get_stream_position("b") == 1
    assert await streamer.get_stream_position("user-stream") is None

    # at or below the last published global position: ignored as a duplicate
    assert await streamer.publish_event(user_event("c", 1), 1, 5) is False
    assert await streamer.publish_event(user_event("a", 3, "email"), 3, 3) is False
    assert await streamer.get_global_position() == 5
    assert await streamer.get_stream_position("a") == 2
    assert await streamer.get_stream_position("c") is None
    got = await drain(receiver, 3)
    assert [item.global_position for item in got] == [1, 2, 5]
    stats = streamer.stats()
    assert (stats.global_position, stats.published, stats.duplicates_ignored) == (5, 3, 2)


@pytest.mark.parametrize(
    ("stream_position", "global_position"), [(0, 1), (1, 0), (-1, 1), (True, 1), (1, 2.0)]
)
async def test_publish_event_rejects_bad_positions(
    stream_position: Any, global_position: Any
) -> None:
    streamer = EventStreamer()
    with pytest.raises(InvalidInputError):
        await streamer.publish_event(user_event("a", 1), stream_position, global_position)
    with pytest.raises(InvalidInputError):
        await streamer.publish_event({"not": "an event"}, 1, 1)  # type: ignore[arg-type]
    assert await streamer.get_global_position() == 0


async def test_stream_event_fields() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription())
    event = user_event("user-7", 3, "email")
    await streamer.publish_event(event, stream_position=3, global_position=42)
    item = await receiver.recv(timeout=WAIT)
    assert isinstance(item, StreamEvent)
    assert isinstance(item.event, UserEmailChanged)
    assert item.event.event_id == event.event_id
    assert item.event.email == "user-7-3@x"
    assert (item.stream_position, item.global_position) == (3, 42)
    assert item.event.aggregate_id == "user-7" and item.event.aggregate_type == "User"


# -- SubscriptionBuilder ---------------------------------------------------------------------------


async def test_subscription_builder() -> None:
    subscription = (
        SubscriptionBuilder()
        .with_id("order-processing")
        .filter_by_aggregate_type("Order")
        .filter_by_event_type("OrderPlaced")
        .from_position(0)
        .build()
    )
    assert isinstance(subscription, Subscription)
    assert subscription.id == "order-processing"
    assert subscription.aggregate_types == frozenset({"Order"})
    assert subscription.event_types == frozenset({"OrderPlaced"})
    assert subscription.from_position == 0

    # filters given twice accumulate; no id means a generated one; no filter means all
    both = (
        SubscriptionBuilder()
        .filter_by_aggregate_type("User")
        .filter_by_aggregate_type(["Order"])
        .filter_by_event_type(["UserRegistered", "OrderPlaced"])
        .build()
    )
    assert both.id and both.aggregate_types == frozenset({"User", "Order"})
    assert both.from_position is None
    everything = SubscriptionBuilder().build()
    assert everything.aggregate_types is None and everything.event_types is None
    with pytest.raises(InvalidInputError):
        SubscriptionBuilder().from_position(-1)

    streamer = EventStreamer()
    orders = await streamer.subscribe(subscription)
    mixed = await streamer.subscribe(both)
    events = [
        user_event("u1", 1),
        order_event("o1", 1),
        order_event("o1", 2, "shipped"),
        user_event("u1", 2, "email"),
        tick_event(1),
    ]
    for position, event in enumerate(events, start=1):
        await streamer.publish_event(event, event.aggregate_version, position)
    assert [i.global_position for i in await drain(orders, 1)] == [2]
    assert [i.global_position for i in await drain(mixed, 2)] == [1, 2]


# -- receiving -------------------------------------------------------------------------------------


async def test_recv_timeout_raises_timeout_error_and_receiver_stays_usable() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="patient"))
    with pytest.raises(TimeoutError):
        await receiver.recv(timeout=0.05)
    assert not receiver.closed
    await streamer.publish_event(user_event("u1", 1), 1, 1)
    assert (await receiver.recv(timeout=WAIT)).global_position == 1


async def test_receiver_close_ends_iteration_and_removes_the_subscription() -> None:
    streamer = EventStreamer()
    receiver = await streamer.subscribe(Subscription(id="closing"))
    await streamer.publish_event(user_event("u1", 1), 1, 1)
    got: list[int] = []

    async def consume() -> None:
        async for item in receiver:
            got.append(item.global_position)

    task = asyncio.create_task(consume())
    await wait_until(lambda: bool(got), "the first event")
    await receiver.close()
    async with asyncio.timeout(WAIT):
        await task  # clean end, no exception
    assert got == [1]
    assert receiver.closed and streamer.subscription_ids == []
    await receiver.close()  # idempotent
    with pytest.raises(SubscriptionClosed):
        await receiver.recv(timeout=WAIT)
    assert [s.subscription_id for s in streamer.stats().receivers] == []


async def test_receiver_async_with_closes_on_exit() -> None:
    streamer = EventStreamer()
    async with await streamer.subscribe(Subscription(id="scoped")) as receiver:
        assert streamer.subscription_ids == ["scoped"]
        await streamer.publish_event(user_event("u1", 1), 1, 1)
        assert (await receiver.recv(timeout=WAIT)).global_position == 1
    assert receiver.closed and streamer.subscription_ids == []
    with pytest.raises(SubscriptionClosed):
        await receiver.recv(timeout=WAIT)

    with pytest.raises(RuntimeError, match="inside"):
        async with await streamer.subscribe(Subscription(id="scoped")) as receiver:
            raise RuntimeError("raised inside")
    assert receiver.closed and streamer.subscription_ids == []


# -- the spec's own snippets -----------------------------------------------------------------------


async def test_spec_basic_streaming_setup(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    processed: list[Event] = []

    async def process_user_event(event: Event) -> None:
        processed.append(event)

    async def produce(store: EventStore) -> None:
        user = User(id="user-123")
        user.register("John Doe", "john@example.com")
        await store.save(user)  # Event automatically published to streamer
        order = Order(id="order-1")
        order.place(1999)
        await store.save(order)  # not a User event: filtered out
        user.change_email("john@new.example.com")
        user.deactivate()
        await store.save(user)
        await wait_until(lambda: len(processed) == 3, "three user events processed")
        await store.close()  # ends the subscriber's loop below

    async def basic_streaming() -> None:
        # Setup
        streamer = EventStreamer(capacity=5000)
        store = await EventStore.create(dsn, streamer=streamer)

        # Subscribe to user events
        subscription = Subscription(id="user-processor", aggregate_type_filter="User")
        receiver = await streamer.subscribe(subscription)
        producer = asyncio.create_task(produce(store))

        # Process events
        async for stream_event in receiver:
            event = stream_event.event
            print(f"Processing {event.event_type} at position {stream_event.global_position}")

            # Your event processing logic here
            await process_user_event(event)
        await producer

    async with asyncio.timeout(WAIT):
        await basic_streaming()
    assert [type(e) for e in processed] == [UserRegistered, UserEmailChanged, UserDeactivated]
    assert all(e.aggregate_id == "user-123" for e in processed)
    assert capsys.readouterr().out.splitlines() == [
        "Processing UserRegistered at position 1",
        "Processing UserEmailChanged at position 3",
        "Processing UserDeactivated at position 4",
    ]


async def test_spec_subscribe_examples_with_automatic_publishing(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        # Subscribe to all user events
        user_subscription = Subscription(aggregate_type_filter="User", id="user-events")
        user_receiver = await streamer.subscribe(user_subscription)

        # Subscribe to specific event types
        email_subscription = Subscription(event_type_filter="UserEmailChanged", id="email-changes")
        email_receiver = await streamer.subscribe(email_subscription)

        # Builder pattern for complex subscriptions
        subscription = (
            SubscriptionBuilder()
            .with_id("order-processing")
            .filter_by_aggregate_type("Order")
            .filter_by_event_type("OrderPlaced")
            .build()
        )
        receiver = await streamer.subscribe(subscription)

        user = User(id="user-123")
        user.register("John Doe", "john@example.com")
        await store.save(user)
        order = Order(id="order-9")
        order.place(500)
        order.ship()
        await store.save(order)
        user.change_email("john@elsewhere.example.com")
        await store.save(user)

        users = [await user_receiver.recv(timeout=WAIT) for _ in range(2)]
        assert [(i.global_position, i.event.event_type) for i in users] == [
            (1, "UserRegistered"),
            (4, "UserEmailChanged"),
        ]
        email = await email_receiver.recv(timeout=WAIT)
        assert (email.global_position, email.stream_position) == (4, 2)
        assert email.event.email == "john@elsewhere.example.com"
        placed = await receiver.recv(timeout=WAIT)
        assert isinstance(placed.event, OrderPlaced) and placed.global_position == 2

        # Position tracking
        user_position = await streamer.get_stream_position("user-123")
        assert user_position == 2
        assert await streamer.get_stream_position("user-stream") is None
        checkpoint = await streamer.get_global_position()
        assert checkpoint == 4

        # Unsubscribe: the receiver stops receiving events
        await streamer.unsubscribe("email-changes")
        user.change_email("again@example.com")
        await store.save(user)
        assert (await user_receiver.recv(timeout=WAIT)).global_position == 5
        with pytest.raises(SubscriptionClosed):
            await email_receiver.recv(timeout=WAIT)


async def test_spec_multi_subscriber_fan_out_in_memory() -> None:
    streamer = EventStreamer()
    seen: dict[str, list[str]] = {"Analytics": [], "Notifications": [], "Audit": []}
    subscribers = []
    analytics_receiver = await streamer.subscribe(
        Subscription(id="analytics", aggregate_type_filter="Order")
    )
    subscribers.append(("Analytics", analytics_receiver))
    notification_receiver = await streamer.subscribe(
        Subscription(id="notifications", event_type_filter="OrderPlaced")
    )
    subscribers.append(("Notifications", notification_receiver))
    audit_receiver = await streamer.subscribe(Subscription(id="audit"))  # All events
    subscribers.append(("Audit", audit_receiver))

    async def process_subscriber(name: str, receiver: EventStreamReceiver) -> None:
        async for stream_event in receiver:
            seen[name].append(stream_event.event.event_type)

    tasks = [
        asyncio.create_task(process_subscriber(name, receiver)) for name, receiver in subscribers
    ]
    events = [order_event("o1", 1), user_event("u1", 1), order_event("o1", 2, "shipped")]
    for position, event in enumerate(events, start=1):
        await streamer.publish_event(event, event.aggregate_version, position)
    await wait_until(
        lambda: (
            (len(seen["Audit"]), len(seen["Analytics"]), len(seen["Notifications"])) == (3, 2, 1)
        ),
        "every subscriber's events",
    )
    for subscription_id in ("analytics", "notifications", "audit"):
        await streamer.unsubscribe(subscription_id)
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*tasks)  # every loop ends once unsubscribed
    assert seen == {
        "Analytics": ["OrderPlaced", "OrderShipped"],
        "Notifications": ["OrderPlaced"],
        "Audit": ["OrderPlaced", "UserRegistered", "OrderShipped"],
    }


async def test_spec_projection_and_publish_event_by_hand() -> None:
    class UserAnalyticsProjection:
        def __init__(self) -> None:
            self.user_count = 0
            self.active_users = 0
            self.registration_rate: list[Any] = []
            self.last_position = 0

        async def process_events(self, receiver: EventStreamReceiver) -> None:
            async for stream_event in receiver:
                await self.handle_event(stream_event.event)
                self.last_position = stream_event.global_position

        async def handle_event(self, event: Event) -> None:
            if event.event_type == "UserRegistered":
                self.user_count += 1
                self.active_users += 1
                self.registration_rate.append(event.timestamp)
            elif event.event_type == "UserDeactivated":
                self.active_users -= 1

    streamer = EventStreamer(capacity=10000)
    receiver = await streamer.subscribe(Subscription(aggregate_type_filter="User"))
    projection = UserAnalyticsProjection()
    task = asyncio.create_task(projection.process_events(receiver))

    user_registered_event = user_event("u1", 1)
    await streamer.publish_event(
        event=user_registered_event, stream_position=42, global_position=1337
    )
    await streamer.publish_event(user_event("u2", 1), 1, 1338)
    await streamer.publish_event(order_event("o1", 1), 1, 1339)
    await streamer.publish_event(user_event("u1", 43, "deactivated"), 43, 1340)
    await wait_until(lambda: projection.last_position == 1340, "the projection to catch up")
    await streamer.unsubscribe(receiver.subscription_id)
    async with asyncio.timeout(WAIT):
        await task
    assert (projection.user_count, projection.active_users) == (2, 1)
    assert projection.registration_rate[0] == user_registered_event.timestamp
    assert await streamer.get_global_position() == 1340
    assert await streamer.get_stream_position("u1") == 43


async def test_spec_manual_event_store_bridge(dsn: str) -> None:
    class EventStoreStreamerBridge:
        def __init__(self, store: EventStore, streamer: EventStreamer) -> None:
            self.store = store
            self.streamer = streamer
            self.last_published_position = 0

        async def publish_new_events(self) -> None:
            new_events = await self.store.load_events_from_position(self.last_published_position)
            for event in new_events:
                assert event.global_position is not None
                await self.streamer.publish_event(
                    event=event,
                    stream_position=event.aggregate_version,
                    global_position=event.global_position,
                )
                self.last_published_position = event.global_position

    streamer = EventStreamer()  # not attached: the bridge publishes by hand
    receiver = await streamer.subscribe(Subscription(id="bridged"))
    async with await EventStore.create(dsn) as store:
        bridge = EventStoreStreamerBridge(store, streamer)
        user = User(id="bridge-user")
        user.register("Ann", "ann@example.com")
        user.change_email("ann@new.example.com")
        await store.save(user)
        await bridge.publish_new_events()
        await bridge.publish_new_events()  # nothing new: nothing published twice
        order = Order(id="bridge-order")
        order.place(10)
        await store.save(order)
        await bridge.publish_new_events()
    got = await drain(receiver, 3)
    assert [(i.global_position, i.stream_position) for i in got] == [(1, 1), (2, 2), (3, 1)]
    assert [type(i.event) for i in got] == [UserRegistered, UserEmailChanged, OrderPlaced]
    assert await streamer.get_stream_position("bridge-user") == 2
