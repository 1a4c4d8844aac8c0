"""Issue 15, item 3: upstream eventuali's methods on Event, Aggregate and EventStore."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventuali_pg import Aggregate, Event, EventStore, InvalidInputError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class CompatMethStepped(Event):
    step: int
    note: str = ""


class CompatMethCommand(Event):
    """Overrides get_event_type as upstream's examples do (a plain method)."""

    command: str = ""

    def get_event_type(self) -> str:  # type: ignore[override]
        return "compat.agent.commandReceived"


class CompatMethLegacy(Event):
    detail: str = ""


class CompatMethWalker(Aggregate):
    steps: list[int] = []  # noqa: RUF012
    commands: list[str] = []  # noqa: RUF012

    def apply_compat_meth_stepped(self, event: CompatMethStepped) -> None:
        self.steps = [*self.steps, event.step]

    def apply_compat_agent_command_received(self, event: CompatMethCommand) -> None:
        self.commands = [*self.commands, event.command]

    def apply_compat_legacy_name(self, event: Event) -> None:
        pass


def test_event_dict_and_json_round_trips() -> None:
    event = CompatMethStepped(step=3, note="n", aggregate_id="w-1")
    data = event.to_dict()
    assert data["step"] == 3 and data["event_type"] == "CompatMethStepped"
    assert data["event_id"] == event.event_id and data["timestamp"] == event.timestamp
    assert CompatMethStepped.from_dict(data) == event
    text = event.to_json()
    assert json.loads(text)["note"] == "n"
    assert CompatMethStepped.from_json(text) == event
    assert CompatMethStepped.get_event_type() == "CompatMethStepped"
    assert event.get_event_type() == "CompatMethStepped"


def test_generic_event_to_dict_keeps_unknown_fields() -> None:
    event = Event.from_dict({"event_type": "compat.unknown", "colour": "red"})
    assert event.to_dict()["colour"] == "red"


def test_aggregate_is_new_to_dict_from_dict() -> None:
    walker = CompatMethWalker(id="w-new")
    assert walker.is_new()
    walker.apply(CompatMethStepped(step=1))
    assert not walker.is_new()  # version 1
    state = walker.to_dict()
    assert state == {"id": "w-new", "version": 1, "steps": [1], "commands": []}
    copy = CompatMethWalker.from_dict(state)
    assert copy.to_dict() == state and not copy.is_new()
    assert not copy.has_uncommitted_events()
    fresh = CompatMethWalker(id="w-fresh")
    fresh.mark_events_as_committed()
    assert not fresh.is_new()


async def test_loaded_aggregates_are_not_new(dsn: str) -> None:
    async with await EventStore.create(connection_string=dsn) as store:
        walker = CompatMethWalker(id="w-load")
        walker.apply(CompatMethStepped(step=1))
        await store.save(walker)
        assert not walker.is_new()
        loaded = await store.load(CompatMethWalker, "w-load")
    assert loaded is not None and not loaded.is_new() and loaded.steps == [1]


async def test_load_events_by_type_orders_by_event_timestamp(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        late, early = CompatMethWalker(id="w-late"), CompatMethWalker(id="w-early")
        late.apply(CompatMethStepped(step=1, timestamp=T0 + timedelta(hours=1)))
        late.apply(CompatMethStepped(step=2, timestamp=T0 + timedelta(hours=3)))
        early.apply(CompatMethStepped(step=1, timestamp=T0))
        early.apply(CompatMethStepped(step=2, timestamp=T0 + timedelta(hours=2)))
        await store.save(late)  # committed first, but its events happened later
        await store.save(early)

        class CompatMethOther(Aggregate):
            def apply_compat_meth_stepped(self, event: Event) -> None:
                pass

        other = CompatMethOther(id="o-1")
        other.apply(CompatMethStepped(step=9, timestamp=T0 - timedelta(days=1)))
        await store.save(other)

        events = await store.load_events_by_type("CompatMethWalker")
        assert [(e.aggregate_id, e.aggregate_version) for e in events] == [
            ("w-early", 1), ("w-late", 1), ("w-early", 2), ("w-late", 2),
        ]  # fmt: skip
        assert all(isinstance(e, CompatMethStepped) for e in events)
        later = await store.load_events_by_type("CompatMethWalker", from_version=1)
        assert [(e.aggregate_id, e.aggregate_version) for e in later] == [
            ("w-early", 2), ("w-late", 2),
        ]  # fmt: skip
        assert await store.load_events_by_type("NoSuchType") == []
        with pytest.raises(InvalidInputError):
            await store.load_events_by_type("")


async def test_get_event_type_override_is_stored_and_loads_as_the_class(dsn: str) -> None:
    event = CompatMethCommand(command="go")
    assert event.event_type == "compat.agent.commandReceived"
    async with await EventStore.create(dsn) as store:
        walker = CompatMethWalker(id="w-cmd")
        walker.apply(CompatMethCommand(command="go"))
        assert walker.commands == ["go"]
        await store.save(walker)
        [loaded] = await store.load_events("w-cmd")
        again = await store.load(CompatMethWalker, "w-cmd")
    assert loaded.event_type == "compat.agent.commandReceived"
    assert isinstance(loaded, CompatMethCommand) and loaded.command == "go"
    assert again is not None and again.commands == ["go"]


async def test_explicit_registration_under_another_name(dsn: str) -> None:
    name = "compat.legacy.name"
    before: dict[str, Any] = EventStore.get_registered_event_classes()
    EventStore.register_event_class(name, CompatMethLegacy)
    try:
        assert EventStore.get_registered_event_classes() == {**before, name: CompatMethLegacy}
        async with await EventStore.create(dsn) as store:
            walker = CompatMethWalker(id="w-legacy")
            walker.apply(Event(event_type=name, detail="kept"))
            await store.save(walker)
            [loaded] = await store.load_events("w-legacy")
            assert type(loaded) is CompatMethLegacy and loaded.detail == "kept"
            EventStore.unregister_event_class(name)
            [generic] = await store.load_events("w-legacy")
        assert type(generic) is Event and generic.to_dict()["detail"] == "kept"
        assert name not in EventStore.get_registered_event_classes()
    finally:
        EventStore.unregister_event_class(name)
    EventStore.unregister_event_class(name)  # unregistering twice is harmless, as upstream


async def test_explicit_registration_wins_over_the_class_name_until_removed(dsn: str) -> None:
    class CompatMethReplacement(Event, event_type="compat.replacement"):
        step: int = 0
        note: str = ""

    EventStore.register_event_class("CompatMethStepped", CompatMethReplacement)
    try:
        async with await EventStore.create(dsn) as store:
            walker = CompatMethWalker(id="w-replaced")
            walker.apply(CompatMethStepped(step=5))
            await store.save(walker)
            [loaded] = await store.load_events("w-replaced")
            assert type(loaded) is CompatMethReplacement and loaded.step == 5
            EventStore.unregister_event_class("CompatMethStepped")
            [restored] = await store.load_events("w-replaced")
            assert type(restored) is CompatMethStepped
    finally:
        EventStore.unregister_event_class("CompatMethStepped")


def test_register_event_class_rejects_non_events() -> None:
    with pytest.raises(InvalidInputError, match="must be a subclass of Event"):
        EventStore.register_event_class("x", dict)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="non-empty"):
        EventStore.register_event_class("", CompatMethLegacy)


def test_upstreams_class_level_registry_is_a_live_view() -> None:
    registry = EventStore._event_registry
    registry["compat.view"] = CompatMethLegacy
    try:
        assert EventStore.get_registered_event_classes()["compat.view"] is CompatMethLegacy
        assert registry.copy()["compat.view"] is CompatMethLegacy  # type: ignore[attr-defined]
        assert registry.pop("compat.view") is CompatMethLegacy
        assert "compat.view" not in EventStore.get_registered_event_classes()
        EventStore.register_event_class("compat.view", CompatMethLegacy)
        registry.clear()
        assert EventStore.get_registered_event_classes() == {}
    finally:
        EventStore.unregister_event_class("compat.view")


async def test_uuid_ids_assigned_after_creation_are_saved_as_text(dsn: str) -> None:
    import uuid

    cause = uuid.uuid4()
    event = CompatMethStepped(step=1)
    event.causation_id = cause  # type: ignore[assignment]  # not validated on assignment
    async with await EventStore.create(dsn) as store:
        walker = CompatMethWalker(id="w-assigned")
        walker.apply(event)
        await store.save(walker)
        [loaded] = await store.load_events("w-assigned")
    assert loaded.causation_id == str(cause)
