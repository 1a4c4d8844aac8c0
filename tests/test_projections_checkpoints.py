"""Checkpoints: stored, forward only, fenced, explicitly reset; resume after a restart; the
projection schema matches the migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers.projection_domain import CountingProjection, create_read_model, seed
from helpers.projection_process import fetchval

from eventuali_pg import CheckpointError, EventStore, InvalidInputError
from eventuali_pg.migration import compare_with_metadata, create_engine_for
from eventuali_pg.projections import CheckpointStore, ProjectionRunner


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        yield store


async def test_checkpoint_moves_forward_only(store: EventStore) -> None:
    checkpoints = CheckpointStore(store)
    assert await checkpoints.get("cp") is None
    await checkpoints.advance("cp", 5)
    await checkpoints.advance("cp", 9)
    await checkpoints.advance("cp", 9)  # already there: fine
    assert await checkpoints.get("cp") == 9
    with pytest.raises(CheckpointError, match="only move forward"):
        await checkpoints.advance("cp", 3)
    assert await checkpoints.get("cp") == 9
    await checkpoints.reset("cp", 2)
    assert await checkpoints.get("cp") == 2
    await checkpoints.reset("cp")
    assert await checkpoints.get("cp") == 0
    with pytest.raises(InvalidInputError):
        await checkpoints.advance("", 1)
    with pytest.raises(InvalidInputError):
        await checkpoints.advance("cp", -1)
    assert [c.subscription_id for c in await checkpoints.list()] == ["cp"]


async def test_checkpoint_fence_detects_another_consumer(store: EventStore) -> None:
    checkpoints = CheckpointStore(store)
    await checkpoints.advance("fenced", 10, expected=0)  # created from nothing
    with pytest.raises(CheckpointError, match="another consumer"):
        await checkpoints.advance("fenced", 20, expected=0)
    with pytest.raises(CheckpointError, match="another consumer"):
        await checkpoints.advance("fenced", 20, expected=5)
    await checkpoints.advance("fenced", 20, expected=10)
    with pytest.raises(CheckpointError, match="only move forward"):
        await checkpoints.advance("fenced", 15, expected=20)
    assert await checkpoints.get("fenced") == 20


async def test_set_last_processed_position_is_forward_only(store: EventStore) -> None:
    projection = CountingProjection()
    await projection.set_last_processed_position(4)  # not bound: kept in memory
    assert await projection.get_last_processed_position() == 4
    with pytest.raises(CheckpointError):
        await projection.set_last_processed_position(3)
    ProjectionRunner(store, projection, subscription_id="bound")
    assert await projection.get_last_processed_position() is None
    await projection.set_last_processed_position(7)
    assert await CheckpointStore(store).get("bound") == 7
    with pytest.raises(CheckpointError):
        await projection.set_last_processed_position(6)


async def test_resume_after_restart(dsn: str) -> None:
    await create_read_model(dsn)
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        ids = await seed(store, aggregates=10, rounds=10)
        runner = ProjectionRunner(store, CountingProjection("first"), subscription_id="resume")
        async with runner:
            await runner.wait_for_position(100, timeout=20)
        assert await CheckpointStore(store).get("resume") == 100
        await seed(store, aggregates=10, rounds=5, prefix="late")
    assert ids
    # A new process would do exactly this: a new store, a new runner, the same subscription id.
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        runner = ProjectionRunner(store, CountingProjection("second"), subscription_id="resume")
        async with runner:
            await runner.wait_for_position(150, timeout=20)
        assert runner.stats().handled == 50
    rows = await fetchval(dsn, "SELECT count(*) FROM public.proj_applied")
    second = await fetchval(
        dsn, "SELECT min(position) FROM public.proj_applied WHERE worker = 'second'"
    )
    assert (rows, second) == (150, 101)


async def test_reset_rebuilds_from_zero(dsn: str) -> None:
    await create_read_model(dsn)
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        await seed(store, aggregates=5, rounds=4)
        runner = ProjectionRunner(store, CountingProjection(), subscription_id="rebuild")
        async with runner:
            await runner.wait_for_position(20, timeout=20)
            await runner.reset()  # stops, truncates in the checkpoint's transaction, restarts
            assert runner.running
            await runner.wait_for_position(20, timeout=20)
        assert runner.stats().handled == 40
        assert await CheckpointStore(store).get("rebuild") == 20
    assert await fetchval(dsn, "SELECT count(*) FROM public.proj_applied") == 20
    assert await fetchval(dsn, "SELECT sum(n) FROM public.proj_counters") == 20


async def test_migrations_match_metadata(dsn: str) -> None:
    engine = create_engine_for(dsn)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(compare_with_metadata)
    finally:
        await engine.dispose()
    assert diff == []
    tables = await fetchval(dsn, "SELECT to_regclass('eventuali.dead_letters') IS NOT NULL")
    assert tables
