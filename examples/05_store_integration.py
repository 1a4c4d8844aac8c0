"""Store integration: automatic publishing, and the spec's manual bridge for a second streamer."""

import asyncio

from _setup import User, prepared_database

from eventuali_pg import EventStore, EventStreamer, Subscription


async def main() -> None:
    dsn = await prepared_database()
    automatic = EventStreamer()
    async with await EventStore.create(dsn, streamer=automatic) as store:
        live = await automatic.subscribe(Subscription(aggregate_type_filter="User"))

        # A second, pure in-memory streamer fed by hand, as the spec's bridge does.
        manual = EventStreamer()
        bridged = await manual.subscribe(Subscription(aggregate_type_filter="User"))
        last_published = await store.get_global_position()

        user = User(id=f"user-{last_published + 1}")
        user.register("John Doe", "john@example.com")
        await store.save(user)  # published to `automatic` by the store itself

        async with asyncio.timeout(30):
            automatic_event = await live.recv()
        print(f"automatic: {automatic_event.event.event_type} @{automatic_event.global_position}")

        for event in await store.load_events_from_position(last_published):
            assert event.global_position is not None
            await manual.publish_event(event, event.aggregate_version, event.global_position)
        bridged_event = await bridged.recv(timeout=5)
        print(f"bridged:   {bridged_event.event.event_type} @{bridged_event.global_position}")
        assert automatic_event.event.event_id == bridged_event.event.event_id
        assert await automatic.get_stream_position(user.id) == 1


asyncio.run(main())
