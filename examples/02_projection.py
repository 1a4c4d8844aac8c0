"""Projection building: a read model fed by a receiver (the spec's UserAnalyticsProjection)."""

import asyncio

from _setup import User, prepared_database

from eventuali_pg import Event, EventStore, EventStreamer, EventStreamReceiver, Subscription


class UserAnalyticsProjection:
    """User counts kept up to date from User events."""

    def __init__(self) -> None:
        self.user_count = 0
        self.active_users = 0
        self.registration_times: list[object] = []
        self.last_position = 0

    async def process_events(self, receiver: EventStreamReceiver, until: int) -> None:
        async for stream_event in receiver:
            await self.handle_event(stream_event.event)
            self.last_position = stream_event.global_position
            if self.last_position >= until:
                return

    async def handle_event(self, event: Event) -> None:
        if event.event_type == "UserRegistered":
            self.user_count += 1
            self.active_users += 1
            self.registration_times.append(event.timestamp)
        elif event.event_type == "UserDeactivated":
            self.active_users -= 1


async def main() -> None:
    dsn = await prepared_database()
    streamer = EventStreamer(capacity=10000)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        start = await store.get_global_position()
        receiver = await streamer.subscribe(
            Subscription(aggregate_type_filter="User"), from_position=start
        )
        users = [User() for _ in range(20)]
        for i, user in enumerate(users):
            user.register(f"user {i}", f"u{i}@example.com")
        for user in users[:5]:
            user.deactivate("test")
        await store.save_all(users)
        head = await store.get_global_position()

        projection = UserAnalyticsProjection()
        async with asyncio.timeout(30):
            await projection.process_events(receiver, until=head)
        print(
            f"users: {projection.user_count}, active: {projection.active_users}, "
            f"last position: {projection.last_position}"
        )
        assert (projection.user_count, projection.active_users) == (20, 15)


asyncio.run(main())
