"""A stored event that no longer fits the reader's class never stalls delivery (issue 10 item 0).

A rolling deploy: a process still running the old code writes ``DriftTicked`` without field
``n``; this process's ``DriftTicked`` requires ``n``. What each consumer gets:

* live and catch-up receivers: the event as a generic ``Event`` with its stored data kept and
  ``event.decode_error`` (a :class:`DecodeError`) attached, in its place in the order;
* ``load_events``: the same generic event; ``load()``: raises the :class:`DecodeError`, which
  names the event type, its version and its position;
* projections: the event is parked in the dead letters with that error at once (never retried,
  never handed to the handler), and processing goes on.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventuali_pg import (
    Aggregate,
    DecodeError,
    Event,
    EventStore,
    EventStreamer,
    Projection,
    ProjectionRunner,
    Subscription,
    TransactionalProjection,
)

WAIT = 30.0
WRITER = Path(__file__).parent / "helpers" / "drift_writer.py"


class DriftOk(Event):
    label: str


class DriftTicked(Event):
    note: str
    n: int  # added by the new code, required


class Gauge(Aggregate):
    def apply_drift_ok(self, event: DriftOk) -> None:
        pass

    def apply_drift_ticked(self, event: DriftTicked) -> None:
        pass


async def run_old_writer(dsn: str, aggregate_id: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), dsn, aggregate_id, stdout=subprocess.PIPE
    )
    async with asyncio.timeout(WAIT):
        out, _ = await process.communicate()
    assert process.returncode == 0 and out.strip() == b"saved"


def assert_drifted_in_place(events: list[Event], first_position: int) -> None:
    assert [e.global_position for e in events] == [first_position + i for i in range(3)]
    before, drifted, after = events
    assert isinstance(before, DriftOk) and isinstance(after, DriftOk)
    assert before.decode_error is None and after.decode_error is None
    assert type(drifted) is Event and drifted.event_type == "DriftTicked"
    assert drifted.model_extra == {"note": "written by the old code"}  # stored data kept
    error = drifted.decode_error
    assert isinstance(error, DecodeError)
    assert error.event_type == "DriftTicked" and error.event_version == 1
    assert error.global_position == first_position + 1
    assert "'DriftTicked'" in str(error) and f"position {first_position + 1}" in str(error)
    assert "n: Field required" in str(error)


async def test_live_delivery_continues_past_an_event_written_by_older_code(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription(id="live"))
        await run_old_writer(dsn, "gauge-live")
        gauge = Gauge(id="gauge-new")
        gauge.apply(DriftTicked(note="new", n=1))
        await store.save(gauge)
        async with asyncio.timeout(WAIT):
            events = [(await receiver.recv()).event for _ in range(4)]
        assert_drifted_in_place(events[:3], 1)
        assert isinstance(events[3], DriftTicked) and events[3].n == 1  # later events flow
        assert store.stats().read_errors == 0  # type: ignore[union-attr]


async def test_catch_up_continues_past_an_event_written_by_older_code(dsn: str) -> None:
    await run_old_writer(dsn, "gauge-history")
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription(from_position=0))
        async with asyncio.timeout(WAIT):
            events = [(await receiver.recv()).event for _ in range(3)]
        assert_drifted_in_place(events, 1)
        history = await store.load_events_from_position(0)
        assert_drifted_in_place(history, 1)


async def test_load_names_the_event_that_no_longer_fits(dsn: str) -> None:
    await run_old_writer(dsn, "gauge-load")
    async with await EventStore.create(dsn) as store:
        assert_drifted_in_place(await store.load_events("gauge-load"), 1)
        with pytest.raises(DecodeError) as raised:
            await store.load(Gauge, "gauge-load")
        assert raised.value.global_position == 2 and raised.value.aggregate_id == "gauge-load"


class Seen(TransactionalProjection):
    """Records the types it handled, exactly once, through the runner's transaction."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    async def handle_event(self, event: Event, connection: Any) -> None:
        self.handled.append(event.event_type)


class SeenAtLeastOnce(Projection):
    def __init__(self) -> None:
        self.handled: list[str] = []

    async def handle_event(self, event: Event) -> None:
        self.handled.append(event.event_type)


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
async def test_a_projection_parks_an_event_written_by_older_code_and_goes_on(
    dsn: str, mode: str
) -> None:
    await run_old_writer(dsn, "gauge-projection")
    async with await EventStore.create(dsn) as store:
        projection = Seen() if mode == "exactly_once" else SeenAtLeastOnce()
        runner = ProjectionRunner(store, projection, subscription_id=f"drift-{mode}")
        async with runner:
            await runner.wait_for_position(3, timeout=WAIT)
        assert projection.handled == ["DriftOk", "DriftOk"]
        (letter,) = await runner.dead_letters()
        assert letter.global_position == 2 and letter.event_type == "DriftTicked"
        assert letter.error.startswith("DecodeError:") and "n: Field required" in letter.error
        assert letter.attempts == 0  # permanent: parked at once, never retried
        assert runner.stats().retries == 0
        assert await runner.retry_dead_letter(2) is False  # still undecodable
