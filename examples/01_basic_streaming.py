"""Basic event streaming: subscribe to User events and process them as they are saved."""

import asyncio

from _setup import Order, User, prepared_database

from eventuali_pg import EventStore, EventStreamer
from eventuali_pg.streaming import Subscription


async def main() -> None:
    dsn = await prepared_database()
    streamer = EventStreamer(capacity=5000)
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(
            Subscription(id="user-processor", aggregate_type_filter="User")
        )

        async def write() -> None:
            for i in range(5):
                user = User()
                user.register(f"user {i}", f"user{i}@example.com")
                order = Order()
                order.place(user.id, 1000 + i)
                await store.save_all([user, order])

        writer = asyncio.create_task(write())
        received = 0
        async with asyncio.timeout(30):
            async for stream_event in receiver:
                event = stream_event.event
                print(f"Processing {event.event_type} at position {stream_event.global_position}")
                received += 1
                if received == 5:
                    break
        await writer
        assert received == 5
        print("received 5 User events; Order events were filtered out")


asyncio.run(main())
