"""Upcasting (issue 10 item 1): stored events of older payload versions read as the current
class on every read path, live included with a writer process still running the old code;
broken chains and failing upcasters are reported, never a pydantic error deep in a consumer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.cli_run import run_cli

import eventuali_pg.models as models
import eventuali_pg.upcasting as upcasting
from eventuali_pg import (
    Aggregate,
    DecodeError,
    Event,
    EventStore,
    EventStreamer,
    Projection,
    ProjectionRunner,
    Subscription,
    UpcasterError,
    check_upcasters,
    upcaster,
)

WAIT = 30.0
WRITER = Path(__file__).parent / "helpers" / "upcast_writer.py"


class TicketOpened(Event, event_version=3):
    subject: str
    priority: int
    tags: list[str]


class Ticket(Aggregate):
    subject: str = ""

    def apply_ticket_opened(self, event: TicketOpened) -> None:
        self.subject = event.subject


@upcaster("TicketOpened", from_version=1)
def title_becomes_subject(payload: dict[str, Any]) -> dict[str, Any]:
    return {"subject": payload["title"]}


@upcaster("TicketOpened", from_version=2)
def priority_and_tags(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "priority": 3, "tags": []}


@upcaster("TicketCreated", from_version=1, to_event_type="TicketOpened")
def renamed_type(payload: dict[str, Any]) -> dict[str, Any]:
    return {"subject": payload["name"]}  # a rename step gives the next version of the new type


async def write_old(dsn: str, prefix: str, count: int = 3) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), dsn, prefix, str(count), stdout=subprocess.PIPE
    )
    async with asyncio.timeout(WAIT):
        out, _ = await process.communicate()
    assert process.returncode == 0 and out.strip() == b"saved"


def assert_upcast(event: Event, n: int) -> None:
    assert type(event) is TicketOpened, event.decode_error
    assert (event.subject, event.priority, event.tags) == (f"old title {n}", 3, [])
    assert event.event_version == 3 and event.stored_event_version == 1


def test_new_events_carry_the_class_version() -> None:
    assert TicketOpened(subject="s", priority=1, tags=[]).event_version == 3
    assert Event().event_version == 1


async def test_loads_and_reads_by_position_upcast(dsn: str) -> None:
    await write_old(dsn, "load")
    async with await EventStore.create(dsn) as store:
        for n in range(3):
            ticket = await store.load(Ticket, f"load-{n}")
            assert ticket is not None and ticket.subject == f"old title {n}"
            (event,) = await store.load_events(f"load-{n}")
            assert_upcast(event, n)
        for n, event in enumerate(await store.load_events_from_position(0)):
            assert_upcast(event, n)
        for n, event in enumerate([e async for e in store.iter_events_from_position(0)]):
            assert_upcast(event, n)
        conn_rows = await (await _stored_versions(store))
        assert conn_rows == [1, 1, 1]  # stored rows are never rewritten


async def _stored_versions(store: EventStore) -> Any:
    async def read() -> list[int]:
        async with store.connection() as conn:
            rows = await conn.fetch(
                "SELECT event_version FROM eventuali.events ORDER BY global_position"
            )
        return [row[0] for row in rows]

    return read()


async def test_catch_up_upcasts(dsn: str) -> None:
    await write_old(dsn, "catchup")
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer):
        receiver = await streamer.subscribe(Subscription(from_position=0))
        async with asyncio.timeout(WAIT):
            for n in range(3):
                assert_upcast((await receiver.recv()).event, n)


async def test_live_delivery_upcasts_what_an_old_process_writes(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer):
        receiver = await streamer.subscribe(Subscription())
        await write_old(dsn, "live")  # written while this process listens
        async with asyncio.timeout(WAIT):
            for n in range(3):
                assert_upcast((await receiver.recv()).event, n)


class Subjects(Projection):
    def __init__(self, refuse: str | None = None) -> None:
        self.subjects: list[str] = []
        self.refuse = refuse

    async def handle_event(self, event: Event) -> None:
        assert isinstance(event, TicketOpened)
        if event.subject == self.refuse:
            raise RuntimeError("not yet")
        self.subjects.append(event.subject)


async def test_projections_and_dead_letter_retries_upcast(dsn: str) -> None:
    await write_old(dsn, "proj")
    async with await EventStore.create(dsn) as store:
        projection = Subjects(refuse="old title 0")
        runner = ProjectionRunner(store, projection, subscription_id="tickets", max_attempts=1)
        async with runner:
            await runner.wait_for_position(3, timeout=WAIT)
        assert projection.subjects == ["old title 1", "old title 2"]
        (letter,) = await runner.dead_letters()
        projection.refuse = None
        assert await runner.retry_dead_letter(letter.global_position) is True
        assert projection.subjects[-1] == "old title 0"


async def test_the_command_line_shows_the_upcast_event(dsn: str) -> None:
    await write_old(dsn, "cli", count=1)
    result = await run_cli("events", "--dsn", dsn, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["event_version"] == 3 and record["stored_event_version"] == 1
    assert record["payload"] == {"subject": "old title 0", "priority": 3, "tags": []}
    table = await run_cli("events", "--dsn", dsn)
    assert "stored v1, read as v3" in table.stdout and "old title 0" in table.stdout


async def test_a_renamed_type_joins_the_chain(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        old = Ticket(id="renamed")
        old._uncommitted.append(  # what old code stored: TicketCreated version 1
            Event(
                event_type="TicketCreated",
                aggregate_id="renamed",
                aggregate_type="Ticket",
                aggregate_version=1,
                name="from the old type",
            )
        )
        old.version = 1
        await store.save(old)
        (event,) = await store.load_events("renamed")
        assert type(event) is TicketOpened and event.event_type == "TicketOpened"
        assert event.subject == "from the old type"


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Classes and upcasters a test registers are forgotten afterwards (a broken chain would
    otherwise fail every later EventStore.create)."""
    classes, steps = dict(models._registry), dict(upcasting._upcasters)
    try:
        yield
    finally:
        models._registry.clear()
        models._registry.update(classes)
        upcasting._upcasters.clear()
        upcasting._upcasters.update(steps)


async def test_a_gap_in_a_chain_fails_at_create(dsn: str, scratch_registry: None) -> None:
    class GappyEvent(Event, event_version=3):
        value: int

    @upcaster("GappyEvent", from_version=1)
    def one_to_two(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    with pytest.raises(UpcasterError, match=r"no upcaster from version 2.*GappyEvent"):
        check_upcasters()
    with pytest.raises(UpcasterError, match="GappyEvent"):
        await EventStore.create(dsn)


def test_an_upcaster_for_a_type_with_no_class_is_reported(scratch_registry: None) -> None:
    @upcaster("NobodyHandlesThis", from_version=1)
    def orphan(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    with pytest.raises(UpcasterError, match=r"NobodyHandlesThis.*no event class"):
        check_upcasters()


def test_two_upcasters_for_one_step_are_refused(scratch_registry: None) -> None:
    with pytest.raises(UpcasterError, match="already has an upcaster"):

        @upcaster("TicketOpened", from_version=1)
        def another(payload: dict[str, Any]) -> dict[str, Any]:
            return payload


@pytest.mark.parametrize("kind", ["raises", "not a dict", "invalid payload", "newer version"])
async def test_a_failing_upcaster_gives_a_typed_decode_error(
    dsn: str, scratch_registry: None, kind: str
) -> None:
    class Flaky(Event, event_version=2):
        value: int

    class Holder(Aggregate):
        def apply_flaky(self, event: Event) -> None:
            pass

    @upcaster("Flaky", from_version=1)
    def flaky(payload: dict[str, Any]) -> Any:
        if kind == "raises":
            raise KeyError("value")
        if kind == "not a dict":
            return ["value"]
        return {"value": "not a number"}

    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription())
        holder = Holder(id="flaky")
        version = 3 if kind == "newer version" else 1
        holder._uncommitted.append(
            Event(
                event_type="Flaky",
                event_version=version,
                aggregate_id="flaky",
                aggregate_type="Holder",
                aggregate_version=1,
                other=1,
            )
        )
        holder.version = 1
        await store.save(holder)
        delivered = (await receiver.recv(timeout=WAIT)).event
        loaded = (await store.load_events("flaky"))[0]
        for event in (delivered, loaded):
            error = event.decode_error
            assert isinstance(error, DecodeError) and type(event) is Event
            assert error.event_type == "Flaky" and error.global_position == 1
        expected = {
            "raises": "raised KeyError",
            "not a dict": "returned a list, not a dict",
            "invalid payload": "value",
            "newer version": "newer than this process",
        }[kind]
        assert expected in str(loaded.decode_error)
        with pytest.raises(DecodeError):
            await store.load(Holder, "flaky")

