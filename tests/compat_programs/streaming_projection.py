"""Pattern of the reference's streaming usage: a store with a streamer, subscriptions built
both ways, a projection fed from a receiver, a saga handler."""

import asyncio
import os
from datetime import datetime, timezone

from eventuali_pg import EventStore, EventStreamer
from eventuali_pg.aggregate import User
from eventuali_pg.event import UserRegistered
from eventuali_pg.streaming import Projection, SagaHandler, Subscription, SubscriptionBuilder


class UserCountProjection(Projection):
    def __init__(self) -> None:
        self.count = 0

    async def handle_event(self, event) -> None:
        if event.event_type == "UserRegistered":
            self.count += 1

    async def reset(self) -> None:
        self.count = 0


class WelcomeSaga(SagaHandler):
    def __init__(self) -> None:
        self.welcomed: list[str] = []

    async def handle_event(self, event) -> None:
        self.welcomed.append(event.name)


async def main() -> None:
    streamer = EventStreamer(capacity=100)
    store = await EventStore.create(os.environ["EVENTUALI_PG_DSN"], streamer=streamer)
    before = datetime.now(timezone.utc)
    projection, saga = UserCountProjection(), WelcomeSaga()
    users = await streamer.subscribe(Subscription(id="users", aggregate_type_filter="User"))
    registrations = await streamer.subscribe(
        SubscriptionBuilder().with_id("registrations").filter_by_event_type("UserRegistered")
        .build()
    )
    for n in range(3):
        user = User(id=f"stream-user-{n}")
        user.apply(UserRegistered(name=f"User {n}", email=f"u{n}@example.org"))
        user.change_email(f"user{n}@example.org")
        await store.save(user)

    async def consume(receiver, handler, count):
        seen = 0
        async for stream_event in receiver:
            await handler.handle_event(stream_event.event)
            await projection.set_last_processed_position(stream_event.global_position) \
                if handler is projection else None
            seen += 1
            if seen == count:
                return

    await asyncio.wait_for(asyncio.gather(consume(users, projection, 6),
                                          consume(registrations, saga, 3)), 60)
    assert projection.count == 3 and saga.welcomed == ["User 0", "User 1", "User 2"]
    assert await projection.get_last_processed_position() == 6
    assert await streamer.get_global_position() == 6
    assert await streamer.get_stream_position("stream-user-1") == 2

    replay = await streamer.subscribe(Subscription(id="replay", from_timestamp=before))
    seen = []
    async for stream_event in replay:
        seen.append(stream_event.global_position)
        if len(seen) == 6:
            break
    assert seen == [1, 2, 3, 4, 5, 6]
    for subscription_id in ("users", "registrations", "replay"):
        await streamer.unsubscribe(subscription_id)
    await store.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
