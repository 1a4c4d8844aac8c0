"""Resilient processing: per-event error handling with a dead-letter list; the stream goes on."""

import asyncio

from _setup import Order, prepared_database

from eventuali_pg import Event, EventStore, EventStreamer, EventStreamReceiver, Subscription


class ResilientEventProcessor:
    def __init__(self) -> None:
        self.processed_count = 0
        self.error_count = 0
        self.dead_letters: list[tuple[Event, str]] = []

    async def process(self, receiver: EventStreamReceiver, expected: int) -> None:
        async for stream_event in receiver:
            try:
                await self.handle_event(stream_event.event)
                self.processed_count += 1
            except ValueError as error:
                self.error_count += 1
                self.dead_letters.append((stream_event.event, str(error)))
                print(f"Error processing {stream_event.event.event_type}: {error}")
            if self.processed_count + self.error_count == expected:
                return

    async def handle_event(self, event: Event) -> None:
        if getattr(event, "total_cents", 0) < 0:
            raise ValueError(f"negative total in order {event.aggregate_id}")


async def main() -> None:
    dsn = await prepared_database()
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription(aggregate_type_filter="Order"))
        orders = [Order() for _ in range(10)]
        for i, order in enumerate(orders):
            order.place("someone", -1 if i in (3, 7) else 100 * i)
        await store.save_all(orders)
        processor = ResilientEventProcessor()
        async with asyncio.timeout(30):
            await processor.process(receiver, expected=10)
        print(f"processed {processor.processed_count}, dead letters {len(processor.dead_letters)}")
        assert (processor.processed_count, len(processor.dead_letters)) == (8, 2)


asyncio.run(main())
