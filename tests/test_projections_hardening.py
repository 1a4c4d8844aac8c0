"""Projection runners under hostile handlers and configurations (issue 17, items 1-7): handler
errors of any type are retried then parked, error text PostgreSQL cannot store, handler
cancellation, connection use (no pooled connection held while waiting for another), filtered
checkpoints, restarts after a checkpoint reset, and consumer-group rebuilds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers.projection_hardening import (
    FAST_RETRIES,
    HANG,
    FailingAtLeastOnce,
    FailingExactlyOnce,
    save_poison,
    save_ticks,
)

from eventuali_pg import Event, EventStore
from eventuali_pg.projections import ProjectionRunner


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
