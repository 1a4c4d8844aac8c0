"""Multi-subscriber fan-out: analytics, notifications and audit receive the same stream."""

import asyncio

from _setup import Order, User, prepared_database

from eventuali_pg import EventStore, EventStreamer, EventStreamReceiver, Subscription


async def main() -> None:
    dsn = await prepared_database()
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        subscribers = [
            (
                "Analytics",
                await streamer.subscribe(
                    Subscription(id="analytics", aggregate_type_filter="Order")
                ),
            ),
            (
                "Notifications",
                await streamer.subscribe(
                    Subscription(id="notifications", event_type_filter="OrderPlaced")
                ),
            ),
            ("Audit", await streamer.subscribe(Subscription(id="audit"))),
        ]
        expected = {"Analytics": 10, "Notifications": 10, "Audit": 20}
        counts = dict.fromkeys(expected, 0)

        async def process_subscriber(name: str, receiver: EventStreamReceiver) -> None:
            async for stream_event in receiver:
                print(f"{name}: {stream_event.event.event_type} @{stream_event.global_position}")
                counts[name] += 1
                if counts[name] == expected[name]:
                    return

        tasks = [asyncio.create_task(process_subscriber(n, r)) for n, r in subscribers]
        for i in range(10):
            user, order = User(), Order()
            user.register(f"buyer {i}", f"buyer{i}@example.com")
            order.place(user.id, 500 * (i + 1))
            await store.save_all([user, order])
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
        print(counts)
        assert counts == expected


asyncio.run(main())
