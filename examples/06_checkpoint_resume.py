"""Checkpoint and resume: stop after some events, restart from the saved global position."""

import asyncio

from _setup import User, prepared_database

from eventuali_pg import EventStore, EventStreamer, Subscription


async def consume(dsn: str, from_position: int, count: int) -> tuple[list[int], int]:
    """Receive `count` User events after `from_position`; return positions and the checkpoint."""
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer):
        receiver = await streamer.subscribe(
            Subscription(aggregate_type_filter="User", from_position=from_position)
        )
        positions: list[int] = []
        async with asyncio.timeout(30):
            async for stream_event in receiver:
                positions.append(stream_event.global_position)
                if len(positions) == count:
                    break
        return positions, positions[-1]


async def main() -> None:
    dsn = await prepared_database()
    async with await EventStore.create(dsn) as store:
        start = await store.get_global_position()
        users = [User() for _ in range(10)]
        for i, user in enumerate(users):
            user.register(f"user {i}", f"u{i}@example.com")
        await store.save_all(users)

    first, checkpoint = await consume(dsn, start, 4)  # e.g. a process that stops
    print(f"first run: {first}; checkpoint saved at {checkpoint}")
    rest, _ = await consume(dsn, checkpoint, 6)  # the restarted process
    print(f"resumed:   {rest}")
    assert first + rest == list(range(start + 1, start + 11))


asyncio.run(main())
