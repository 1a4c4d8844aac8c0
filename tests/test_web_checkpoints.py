"""Issue 19, item 3: read-your-writes across processes through the stored checkpoint, and a
standby runner's figures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from helpers.projection_domain import CountingProjection, create_read_model, seed

from eventuali_pg import EventStore, wait_for_checkpoint
from eventuali_pg.projections import ProjectionRunner

HANG = 30  # seconds: a hang detector only


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def _runner(store: EventStore, worker: str) -> ProjectionRunner:
    return ProjectionRunner(
        store,
        CountingProjection(worker),
        subscription_id="ryw",
        single_active=True,
        lease_poll_interval=0.1,
    )


async def test_a_standby_waits_on_the_stored_checkpoint_and_reports_it(dsn: str) -> None:
    await create_read_model(dsn)
    async with (
        await EventStore.create(dsn) as holder_store,
        await EventStore.create(dsn) as standby_store,
    ):
        holder = _runner(holder_store, "holder")
        await holder.start()
        try:
            await _until(lambda: holder.active)
            standby = _runner(standby_store, "standby")
            async with standby:
                await seed(holder_store, aggregates=3, rounds=4)
                head = await holder_store.get_global_position()
                # the standby runs nothing, yet sees the write through the stored checkpoint
                assert await standby.wait_for_checkpoint(head, timeout=HANG) >= head
                async with standby_store.connection() as conn:
                    applied = await conn.fetchval("SELECT count(*) FROM public.proj_applied")
                assert applied == head
                with pytest.raises(TimeoutError):  # its local runner processed nothing
                    await standby.wait_for_position(head, timeout=0.2)
                await _until(lambda: standby.stats().checkpoint >= head)
                stats = standby.stats()
                assert (stats.active, stats.running, stats.checkpoint) == (False, True, head)
                assert stats.processed_position == 0
        finally:
            await holder.stop()


async def test_wait_for_checkpoint_without_a_runner_and_its_timeout(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        with pytest.raises(TimeoutError, match="'nobody' is at position 0, not yet at 3"):
            await wait_for_checkpoint(store, "nobody", 3, timeout=0.1)
        from eventuali_pg import CheckpointStore

        await CheckpointStore(store).advance("somebody", 5)
        assert await wait_for_checkpoint(store, "somebody", 5, timeout=HANG) == 5
