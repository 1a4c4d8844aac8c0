"""Failing handlers: retries, dead letters (park, list, retry, discard), and at-least-once
checkpointing on a clean stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from helpers.projection_domain import ProjTicker, apply_exactly_once, create_read_model, seed
from helpers.projection_process import fetchval

from eventuali_pg import Event, EventStore, InvalidInputError
from eventuali_pg.projections import (
    CheckpointStore,
    DeadLetterQueue,
    Projection,
    ProjectionRunner,
    TransactionalProjection,
)


class Poisoned(Exception):
    pass


class FlakyTransactional(TransactionalProjection):
    def __init__(self) -> None:
        self.fixed = False
        self.calls: Counter[int] = Counter()

    async def handle_event(self, event: Event, connection: Any) -> None:
        assert event.global_position is not None
        self.calls[event.global_position] += 1
        await apply_exactly_once(connection, event, "w")
        if getattr(event, "poison", False) and not self.fixed:
            raise Poisoned(f"cannot digest event {event.global_position}")


class FlakyAtLeastOnce(Projection):
    def __init__(self) -> None:
        self.fixed = False
        self.calls: Counter[int] = Counter()
        self.handled: list[int] = []

    async def handle_event(self, event: Event) -> None:
        assert event.global_position is not None
        self.calls[event.global_position] += 1
        if getattr(event, "poison", False) and not self.fixed:
            raise Poisoned(f"cannot digest event {event.global_position}")
        self.handled.append(event.global_position)

    async def handle_batch(self, events: Sequence[Event]) -> None:
        for event in events:  # fails before touching anything when a poison is in the batch
            if getattr(event, "poison", False) and not self.fixed:
                raise Poisoned("batch has a poison event")
        for event in events:
            await self.handle_event(event)


async def _save_with_poison(store: EventStore) -> tuple[int, int]:
    """20 good events, a poison, 9 good, a poison, 9 good: returns the two poison positions."""
    await seed(store, aggregates=4, rounds=5)
    bad = ProjTicker(id="bad-1")
    bad.tick(poison=True)
    await store.save(bad)
    first = await store.get_global_position()
    await seed(store, aggregates=3, rounds=3, prefix="mid")
    worse = ProjTicker(id="bad-2")
    worse.tick(poison=True)
    await store.save(worse)
    second = await store.get_global_position()
    await seed(store, aggregates=3, rounds=3, prefix="end")
    return first, second


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_poison_event_is_retried_parked_retried_and_discarded(dsn: str, mode: str) -> None:
    await create_read_model(dsn)
    projection: FlakyTransactional | FlakyAtLeastOnce = (
        FlakyTransactional() if mode == "exactly_once" else FlakyAtLeastOnce()
    )
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        first, second = await _save_with_poison(store)
        head = await store.get_global_position()
        runner = ProjectionRunner(
            store,
            projection,
            subscription_id=f"poison-{mode}",
            batch_size=8,
            max_attempts=3,
            retry_delay=0.001,
            max_retry_delay=0.01,
            checkpoint_every=5,
        )
        async with runner:
            await runner.wait_for_position(head, timeout=20)
            letters = await runner.dead_letters()
            assert [letter.global_position for letter in letters] == [first, second]
            letter = letters[0]
            assert letter.attempts == 3
            assert letter.error == f"Poisoned: cannot digest event {first}"
            assert "Traceback" in letter.traceback and "raise Poisoned" in letter.traceback
            assert letter.aggregate_id == "bad-1" and letter.event_type == "proj.Ticked"
            assert letter.event["poison"] is True
            assert (await letter.load_event(store)).global_position == first
            # Retried the configured number of times (plus once inside its failing batch).
            assert projection.calls[first] in (3, 4)
            stats = runner.stats()
            assert stats.parked == 2
            assert stats.retries >= 4
            # Later events were processed.
            assert runner.stats().processed_position == head

            # A retry that fails again keeps the event, with one more attempt.
            assert await runner.retry_dead_letter(first) is False
            again = await runner.dead_letter_queue.get(runner.subscription_id, first)
            assert again is not None and again.attempts == 4

            # Whatever the handler raises counts as failing again, even a library error type.
            class Refuses(Projection):
                async def handle_event(self, event: Event) -> None:
                    raise InvalidInputError("the handler refuses this event")

            assert await runner.dead_letter_queue.retry(
                runner.subscription_id, first, Refuses()
            ) is False
            again = await runner.dead_letter_queue.get(runner.subscription_id, first)
            assert again is not None and again.attempts == 5
            assert "the handler refuses this event" in again.error
            with pytest.raises(InvalidInputError, match="no event at position"):
                await runner.dead_letter_queue.retry(runner.subscription_id, head + 99, Refuses())

            projection.fixed = True
            assert await runner.retry_dead_letter(first) is True
            assert await runner.discard_dead_letter(second) is True
            assert await runner.discard_dead_letter(second) is False
            assert await runner.dead_letters() == []
            assert await DeadLetterQueue(store).count(runner.subscription_id) == 0
        assert await CheckpointStore(store).get(runner.checkpoint_id) == head

    if mode == "exactly_once":
        applied = await fetchval(
            dsn, "SELECT array_agg(position ORDER BY position) FROM proj_applied"
        )
        assert applied == [p for p in range(1, head + 1) if p != second]
    else:
        assert isinstance(projection, FlakyAtLeastOnce)
        assert sorted(set(projection.handled)) == [p for p in range(1, head + 1) if p != second]


async def test_at_least_once_checkpoints_every_n_and_on_clean_stop(dsn: str) -> None:
    projection = FlakyAtLeastOnce()
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        await seed(store, aggregates=7, rounds=5)  # 35 events
        runner = ProjectionRunner(
            store,
            projection,
            subscription_id="alo-stop",
            batch_size=10,
            checkpoint_every=20,
            checkpoint_interval=3600,
        )
        checkpoints = CheckpointStore(store)
        await runner.start()
        try:
            await runner.wait_for_position(35, timeout=20)
            # 35 events in batches of at most 10 with a checkpoint after 20: not yet at 35.
            stored = await checkpoints.get("alo-stop")
            assert stored is not None and 20 <= stored < 35
        finally:
            await runner.stop()
        assert await checkpoints.get("alo-stop") == 35
        assert projection.handled == list(range(1, 36))


async def test_at_least_once_checkpoints_after_interval(dsn: str) -> None:
    projection = FlakyAtLeastOnce()
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        await seed(store, aggregates=3, rounds=1)
        runner = ProjectionRunner(
            store, projection, subscription_id="alo-timer", checkpoint_interval=0.05
        )
        checkpoints = CheckpointStore(store)
        async with runner:
            await runner.wait_for_position(3, timeout=20)
            # No more events arrive: the timer alone writes the checkpoint.
            async with asyncio.timeout(20):
                while await checkpoints.get("alo-timer") != 3:  # noqa: ASYNC110 (database)
                    await asyncio.sleep(0.02)
