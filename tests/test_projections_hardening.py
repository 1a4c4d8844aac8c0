"""Projection runners under hostile handlers and configurations (issue 17, items 1-7): handler
errors of any type are retried then parked, error text PostgreSQL cannot store, handler
cancellation, connection use (no pooled connection held while waiting for another), filtered
checkpoints, restarts after a checkpoint reset, and consumer-group rebuilds."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from helpers.projection_domain import create_read_model
from helpers.projection_hardening import (
    FAST_RETRIES,
    HANG,
    FailingAtLeastOnce,
    FailingExactlyOnce,
    HardNotebook,
    HardTicker,
    cancelled_inner_task,
    save_notes,
    save_poison,
    save_ticks,
)
from helpers.projection_process import fetchval

from eventuali_pg import ConfigurationError, Event, EventStore, InvalidInputError
from eventuali_pg.projections import (
    CheckpointStore,
    ConsumerGroup,
    DeadLetterQueue,
    Projection,
    ProjectionRunner,
    TransactionalProjection,
    member_for,
    reset_group,
)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        yield store


# -- item 3: error text PostgreSQL cannot store --------------------------------------------------


class Unprintable(Exception):
    pass


async def _raise_unstorable(event: Event, connection: Any = None) -> None:
    raise Unprintable("NUL \x00 here, lone surrogate \udcff there")


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_error_text_with_nul_and_lone_surrogate_is_parked(
    store: EventStore, mode: str
) -> None:
    projection = (
        FailingExactlyOnce(_raise_unstorable)
        if mode == "exactly_once"
        else FailingAtLeastOnce(_raise_unstorable)
    )
    await save_ticks(store, 3)
    poison = await save_poison(store)
    await save_ticks(store, 3, prefix="after")
    head = await store.get_global_position()
    runner = ProjectionRunner(
        store, projection, subscription_id=f"unstorable-{mode}", batch_size=1, **FAST_RETRIES
    )
    async with runner:
        await runner.wait_for_position(head, timeout=HANG)
        [letter] = await runner.dead_letters()
        assert letter.global_position == poison
        assert letter.error == "Unprintable: NUL \ufffd here, lone surrogate \ufffd there"
        assert "\x00" not in letter.traceback and "\ufffd" in letter.traceback
        # Failing again from the dead-letter table stores the same text the same way.
        assert await runner.retry_dead_letter(poison) is False
        again = await runner.dead_letter_queue.get(runner.subscription_id, poison)
        assert again is not None and again.attempts == 4
        assert again.error == letter.error
    assert runner.stats().sessions == 1


# -- item 1: a handler's OSError or TimeoutError is a handler failure, not a lost database ------


async def _refused(event: Event, connection: Any = None) -> None:
    raise ConnectionRefusedError(111, "mail server refused the connection")


async def _unknown_host(event: Event, connection: Any = None) -> None:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def _missing_file(event: Event, connection: Any = None) -> None:
    raise FileNotFoundError(2, "No such file or directory", "/nonexistent/template.txt")


async def _timeout_expires(event: Event, connection: Any = None) -> None:
    async with asyncio.timeout(0):
        await asyncio.sleep(3600)


HANDLER_FAILURES = {
    "ConnectionRefusedError": _refused,
    "gaierror": _unknown_host,
    "FileNotFoundError": _missing_file,
    "TimeoutError": _timeout_expires,
}


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
@pytest.mark.parametrize("kind", sorted(HANDLER_FAILURES))
async def test_handler_os_and_timeout_errors_are_retried_then_parked(
    store: EventStore, mode: str, kind: str
) -> None:
    failure = HANDLER_FAILURES[kind]
    projection = (
        FailingExactlyOnce(failure) if mode == "exactly_once" else FailingAtLeastOnce(failure)
    )
    await save_ticks(store, 5)
    poison = await save_poison(store)
    await save_ticks(store, 5, prefix="after")
    head = await store.get_global_position()
    runner = ProjectionRunner(
        store, projection, subscription_id=f"oserror-{mode}", batch_size=1, **FAST_RETRIES
    )
    async with runner:
        await runner.wait_for_position(head, timeout=HANG)
        [letter] = await runner.dead_letters()
    assert letter.global_position == poison and letter.attempts == 3
    assert letter.error.startswith(f"{kind}: ")
    # One session: no restart from the checkpoint, so no event before the poison ran again.
    assert runner.stats().sessions == 1
    assert projection.calls == {p: 3 if p == poison else 1 for p in range(1, head + 1)}
    assert await runner.checkpoints.get(runner.checkpoint_id) == head


async def test_exactly_once_handler_sql_refused_by_the_server_is_parked(store: EventStore) -> None:
    async def divide_by_zero(event: Event, connection: Any) -> None:
        await connection.execute("SELECT 1 / 0")

    projection = FailingExactlyOnce(divide_by_zero)
    await save_ticks(store, 2)
    poison = await save_poison(store)
    await save_ticks(store, 2, prefix="after")
    head = await store.get_global_position()
    runner = ProjectionRunner(
        store, projection, subscription_id="refused-sql", batch_size=1, **FAST_RETRIES
    )
    async with runner:
        await runner.wait_for_position(head, timeout=HANG)
        [letter] = await runner.dead_letters()
    assert letter.global_position == poison
    assert letter.error.startswith("DivisionByZeroError: ")
    assert runner.stats().sessions == 1


async def test_exactly_once_connection_killed_in_the_handler_is_a_lost_connection(
    store: EventStore, dsn: str
) -> None:
    killed: list[int] = []

    async def kill_own_connection(event: Event, connection: Any) -> None:
        if killed:
            return
        pid = connection.get_server_pid()
        killed.append(pid)
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await connection.execute("SELECT 1")

    projection = FailingExactlyOnce(kill_own_connection)
    await save_ticks(store, 2)
    poison = await save_poison(store)
    await save_ticks(store, 2, prefix="after")
    head = await store.get_global_position()
    runner = ProjectionRunner(store, projection, subscription_id="killed", batch_size=1)
    async with runner:
        await runner.wait_for_position(head, timeout=HANG)
        assert await runner.dead_letters() == []
    # The session ended on the lost connection and resumed from the checkpoint; nothing parked.
    assert killed and runner.stats().sessions >= 2
    assert projection.calls[poison] == 2
    assert await runner.checkpoints.get(runner.checkpoint_id) == head


# -- item 4: a handler's CancelledError is a handler failure; only the runner's own stops it ----


async def _inner_task_cancelled(event: Event, connection: Any = None) -> None:
    await cancelled_inner_task()


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_handler_cancelled_error_is_retried_then_parked(store: EventStore, mode: str) -> None:
    projection = (
        FailingExactlyOnce(_inner_task_cancelled)
        if mode == "exactly_once"
        else FailingAtLeastOnce(_inner_task_cancelled)
    )
    await save_ticks(store, 3)
    poison = await save_poison(store)
    await save_ticks(store, 3, prefix="after")
    head = await store.get_global_position()
    runner = ProjectionRunner(
        store, projection, subscription_id=f"cancelled-{mode}", batch_size=1, **FAST_RETRIES
    )
    async with runner:
        await runner.wait_for_position(head, timeout=HANG)
        [letter] = await runner.dead_letters()
    assert letter.global_position == poison and letter.attempts == 3
    assert letter.error.startswith("CancelledError")
    assert runner.stats().sessions == 1
    assert projection.calls == {p: 3 if p == poison else 1 for p in range(1, head + 1)}


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_stop_cancels_a_slow_handler_without_parking(store: EventStore, mode: str) -> None:
    entered = asyncio.Event()

    async def hang(event: Event, connection: Any = None) -> None:
        entered.set()
        await asyncio.sleep(3600)

    projection = FailingExactlyOnce(hang) if mode == "exactly_once" else FailingAtLeastOnce(hang)
    await save_ticks(store, 2)
    poison = await save_poison(store)
    runner = ProjectionRunner(
        store, projection, subscription_id=f"stop-{mode}", batch_size=1, stop_timeout=0.1
    )
    await runner.start()
    try:
        await asyncio.wait_for(entered.wait(), HANG)
    finally:
        await asyncio.wait_for(runner.stop(), HANG)
    assert not runner.running
    assert projection.calls[poison] == 1
    assert await runner.dead_letters() == []
    assert await runner.checkpoints.get(runner.checkpoint_id) == poison - 1


# -- item 2: no library operation holds a pooled connection while waiting for another ----------


class StoreReadingExactlyOnce(TransactionalProjection):
    """Reads through the store (a pooled connection) while handling; the first call waits at
    ``barrier`` so that several runners are inside their transactions at once."""

    def __init__(self, store: EventStore, barrier: asyncio.Barrier | None = None) -> None:
        self.store = store
        self.barrier = barrier
        self.handled: list[int] = []

    async def handle_event(self, event: Event, connection: Any) -> None:
        assert event.global_position is not None
        if self.barrier is not None:
            barrier, self.barrier = self.barrier, None
            await barrier.wait()
        await connection.execute("SELECT 1")
        assert await self.store.get_global_position() >= event.global_position
        self.handled.append(event.global_position)

    async def reset(self, connection: Any) -> None:
        await self.store.get_global_position()


class StoreReadingAtLeastOnce(Projection):
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.handled: list[int] = []

    async def handle_event(self, event: Event) -> None:
        assert event.global_position is not None
        assert await self.store.get_global_position() >= event.global_position
        self.handled.append(event.global_position)

    async def reset(self) -> None:
        await self.store.get_global_position()


async def _park_by_hand(store: EventStore, subscription_id: str, positions: list[int]) -> None:
    queue = DeadLetterQueue(store)
    for position in positions:
        [event] = await store.load_events_from_position(position - 1, 1)
        await queue.park(subscription_id, event, Unprintable("parked by the test"), 1)


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_dead_letter_retry_with_a_pool_of_one(dsn: str, mode: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2, pool_max_size=1) as store:
        await save_ticks(store, 3)
        await _park_by_hand(store, "retry-pool-1", [2])
        projection = (
            StoreReadingExactlyOnce(store)
            if mode == "exactly_once"
            else StoreReadingAtLeastOnce(store)
        )
        queue = DeadLetterQueue(store)
        assert await asyncio.wait_for(queue.retry("retry-pool-1", 2, projection), HANG) is True
        assert projection.handled == [2]
        assert await queue.count("retry-pool-1") == 0


async def test_concurrent_dead_letter_retries_do_not_starve_the_pool(dsn: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2, pool_max_size=2) as store:
        await save_ticks(store, 6)
        await _park_by_hand(store, "retry-many", [1, 2, 3, 4, 5, 6])
        projection = StoreReadingExactlyOnce(store)
        queue = DeadLetterQueue(store)

        async def save_more() -> None:
            await save_ticks(store, 3, prefix="app")

        results = await asyncio.wait_for(
            asyncio.gather(
                *(queue.retry("retry-many", p, projection) for p in range(1, 7)), save_more()
            ),
            HANG,
        )
        assert results[:6] == [True] * 6
        assert sorted(projection.handled) == [1, 2, 3, 4, 5, 6]
        assert await store.get_global_position() == 9


async def test_two_exactly_once_runners_reading_the_store_with_a_pool_of_two(dsn: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2, pool_max_size=2) as store:
        await save_ticks(store, 20)
        barrier = asyncio.Barrier(2)
        first = StoreReadingExactlyOnce(store, barrier)
        second = StoreReadingExactlyOnce(store, barrier)
        async with (
            ProjectionRunner(store, first, subscription_id="pool-a", batch_size=5) as a,
            ProjectionRunner(store, second, subscription_id="pool-b", batch_size=5) as b,
        ):
            await asyncio.wait_for(
                asyncio.gather(a.wait_for_position(20), b.wait_for_position(20)), HANG
            )
        assert first.handled == second.handled == list(range(1, 21))


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_reset_with_a_pool_of_one(dsn: str, mode: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2, pool_max_size=1) as store:
        await save_ticks(store, 5)
        projection = (
            StoreReadingExactlyOnce(store)
            if mode == "exactly_once"
            else StoreReadingAtLeastOnce(store)
        )
        async with ProjectionRunner(store, projection, subscription_id=f"reset-1-{mode}") as run:
            await run.wait_for_position(5, timeout=HANG)
            await asyncio.wait_for(run.reset(), HANG)
            await run.wait_for_position(5, timeout=HANG)
        assert projection.handled == [1, 2, 3, 4, 5] * 2


# -- item 6: after a restart the stored checkpoint is the truth --------------------------------


@pytest.mark.parametrize("how", ["reset", "delete"])
async def test_at_least_once_restart_honours_a_checkpoint_reset(
    store: EventStore, how: str
) -> None:
    projection = StoreReadingAtLeastOnce(store)
    await save_ticks(store, 6)
    runner = ProjectionRunner(store, projection, subscription_id=f"restart-{how}")
    checkpoints = runner.checkpoints
    async with runner:
        await runner.wait_for_position(6, timeout=HANG)
    assert await checkpoints.get(runner.checkpoint_id) == 6
    if how == "reset":
        await checkpoints.reset(runner.checkpoint_id, 2)
    else:
        await checkpoints.delete(runner.checkpoint_id)
    first_again = 3 if how == "reset" else 1
    async with runner:
        await runner.wait_for_position(6, timeout=HANG)
        assert runner.stats().processed_position == 6
    assert projection.handled == [*range(1, 7), *range(first_again, 7)]
    assert await checkpoints.get(runner.checkpoint_id) == 6


async def test_at_least_once_stop_does_not_write_back_over_a_reset(store: EventStore) -> None:
    projection = StoreReadingAtLeastOnce(store)
    await save_ticks(store, 6)
    runner = ProjectionRunner(
        store,
        projection,
        subscription_id="reset-while-running",
        checkpoint_interval=3600,
        checkpoint_every=1000,
    )
    checkpoints = runner.checkpoints
    async with runner:
        await runner.wait_for_position(6, timeout=HANG)
    assert await checkpoints.get(runner.checkpoint_id) == 6
    async with runner:
        await save_ticks(store, 4, prefix="more")
        await runner.wait_for_position(10, timeout=HANG)  # handled, not checkpointed yet
        await checkpoints.reset(runner.checkpoint_id, 0)  # an operator asks for a rebuild
    # The clean stop did not write position 10 back over the reset.
    assert await checkpoints.get(runner.checkpoint_id) == 0
    async with runner:
        await runner.wait_for_position(10, timeout=HANG)
    assert projection.handled == [*range(1, 11), *range(1, 11)]
    assert await checkpoints.get(runner.checkpoint_id) == 10


# -- item 5: a filtered checkpoint moves over the events its filter skips -----------------------


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
@pytest.mark.parametrize("filtered_by", ["aggregate_type", "event_type"])
async def test_filtered_checkpoint_moves_past_skipped_events(
    store: EventStore, mode: str, filtered_by: str
) -> None:
    projection: StoreReadingExactlyOnce | StoreReadingAtLeastOnce = (
        StoreReadingExactlyOnce(store) if mode == "exactly_once" else StoreReadingAtLeastOnce(store)
    )
    await save_ticks(store, 3)
    await save_notes(store, 5)  # caught up from the table
    filters = (
        {"aggregate_type_filter": "projh.Ticker"}
        if filtered_by == "aggregate_type"
        else {"event_type_filter": "projh.Ticked"}
    )
    runner = ProjectionRunner(
        store, projection, subscription_id=f"filtered-{mode}-{filtered_by}", **filters
    )
    checkpoints = runner.checkpoints
    async with runner:
        await runner.wait_for_position(8, timeout=HANG)
        await _checkpoint_reaches(checkpoints, runner.checkpoint_id, 8)
        await save_ticks(store, 2, prefix="live")
        await save_notes(store, 4, prefix="live-notes")  # skipped live
        await runner.wait_for_position(14, timeout=HANG)
        await _checkpoint_reaches(checkpoints, runner.checkpoint_id, 14)
        # One transaction: a matching event, then skipped ones published right behind it.
        ticker, book = HardTicker(id="mixed-t"), HardNotebook(id="mixed-n")
        ticker.tick()
        book.note("a")
        book.note("b")
        await store.save_all([ticker, book])
        await runner.wait_for_position(17, timeout=HANG)
        await _checkpoint_reaches(checkpoints, runner.checkpoint_id, 17)
        assert runner.stats().processed_position == 17
    assert projection.handled == [1, 2, 3, 9, 10, 15]
    assert await checkpoints.get(runner.checkpoint_id) == 17


async def _checkpoint_reaches(checkpoints: CheckpointStore, checkpoint_id: str, at: int) -> None:
    async with asyncio.timeout(HANG):
        while await checkpoints.get(checkpoint_id) != at:  # noqa: ASYNC110 (database)
            await asyncio.sleep(0.02)


# -- item 7: a consumer group is rebuilt as a whole ----------------------------------------------


class GroupReadModel(TransactionalProjection):
    """Exactly-once: one row per event in proj_applied (the members share the table)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker

    async def handle_event(self, event: Event, connection: Any) -> None:
        await connection.execute(
            "INSERT INTO public.proj_applied (position, aggregate_id, version, worker) "
            "VALUES ($1, $2, $3, $4)",
            event.global_position,
            event.aggregate_id,
            event.aggregate_version,
            self.worker,
        )

    async def reset(self, connection: Any) -> None:
        await connection.execute("TRUNCATE public.proj_applied")


async def test_group_member_reset_is_refused_and_the_group_resets_as_a_whole(
    store: EventStore, dsn: str
) -> None:
    await create_read_model(dsn)
    await save_ticks(store, 12)
    poison = await save_poison(store)
    head = await store.get_global_position()

    def member(i: int) -> ProjectionRunner:
        return ProjectionRunner(
            store,
            GroupReadModel(f"m{i}"),
            subscription_id="grp",
            group=ConsumerGroup(size=2, member=i),
            **FAST_RETRIES,
        )

    members = [member(0), member(1)]
    for runner in members:
        await runner.start()
    try:
        for runner in members:
            await runner.wait_for_position(head, timeout=HANG)
        rows = await fetchval(dsn, "SELECT count(*) FROM public.proj_applied")
        assert rows == head
        with pytest.raises(ConfigurationError, match="reset_group"):
            await members[0].reset()
        # Refused before anything happened: still running, nothing rewound or emptied.
        assert members[0].running
        assert await fetchval(dsn, "SELECT count(*) FROM public.proj_applied") == head
    finally:
        for runner in members:
            await runner.stop()
    owner = members[member_for("poison-1", 2)]
    assert await owner.dead_letters() == []  # the poison event was fine for this read model

    # Park one event by hand, then rebuild the whole group: every member's checkpoint, the
    # group's dead letters and the read model go in one transaction.
    await _park_by_hand(store, "grp", [poison])
    await reset_group(store, GroupReadModel("reset"), subscription_id="grp", size=2)
    partitions = ConsumerGroup(size=2, member=0).group_checkpoint_ids("grp")
    stored = await members[0].checkpoints.get_many(partitions)
    assert set(stored.values()) == {0}
    assert await DeadLetterQueue(store).count("grp") == 0
    assert await fetchval(dsn, "SELECT count(*) FROM public.proj_applied") == 0

    for runner in members:
        await runner.start()
    try:
        for runner in members:
            await runner.wait_for_position(head, timeout=HANG)
    finally:
        for runner in members:
            await runner.stop()
    assert await fetchval(dsn, "SELECT count(*) FROM public.proj_applied") == head


async def test_reset_group_checks_its_arguments(store: EventStore) -> None:
    projection = GroupReadModel("x")
    with pytest.raises(InvalidInputError):
        await reset_group(store, projection, subscription_id="", size=2)
    with pytest.raises(InvalidInputError):
        await reset_group(store, projection, subscription_id="grp", size=0)
    with pytest.raises(InvalidInputError):
        await reset_group(store, object(), subscription_id="grp", size=2)  # type: ignore[arg-type]
