"""Events and aggregates without a database: registry, dispatch, replay, uncommitted events."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from helpers.domain import (
    AccountOpened,
    BankAccount,
    Counter,
    Incremented,
    MoneyDeposited,
    Renamed,
    User,
    Warehouse,
)

from eventuali_pg import (
    Aggregate,
    Event,
    EventTypeConflictError,
    EventualiError,
    InvalidInputError,
    MissingHandlerError,
    event_class_for,
    registered_event_types,
)
from eventuali_pg.models import snake_case


def _define(module: str, source: str, **names: Any) -> dict[str, Any]:
    """Run ``source`` as if it were module ``module``; return its namespace."""
    namespace: dict[str, Any] = {"__name__": module, "Event": Event, **names}
    exec(source, namespace)
    return namespace


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# -- the registry ------------------------------------------------------------------------------


def test_event_classes_register_under_their_class_name() -> None:
    assert event_class_for("AccountOpened") is AccountOpened
    assert registered_event_types()["MoneyDeposited"] is MoneyDeposited
    assert AccountOpened(owner="ann").event_type == "AccountOpened"
    assert event_class_for("NoSuchEventTypeAnywhere") is None


def test_registered_event_types_is_a_copy() -> None:
    copy = registered_event_types()
    copy["AccountOpened"] = Event
    assert event_class_for("AccountOpened") is AccountOpened


def test_event_type_keyword_registers_another_name() -> None:
    assert event_class_for("counter.renamed") is Renamed
    assert event_class_for("Renamed") is None
    assert Renamed(name="x").event_type == "counter.renamed"
    assert Renamed.__event_type__ == "counter.renamed"


def test_two_modules_claiming_one_type_conflict_at_definition_time() -> None:
    name = _unique("Clash")
    first = _define("tests_mod_a", f"class {name}(Event):\n    a: int = 0\n")[name]
    with pytest.raises(EventTypeConflictError) as info:
        _define("tests_mod_b", f"class {name}(Event):\n    b: int = 0\n")
    message = str(info.value)
    assert f"tests_mod_a.{name}" in message and f"tests_mod_b.{name}" in message
    assert "replace=True" in message and "event_type=" in message
    assert isinstance(info.value, EventualiError) and isinstance(info.value, TypeError)
    assert event_class_for(name) is first


def test_conflict_through_event_type_keyword() -> None:
    name = _unique("claimed.")
    _define("tests_mod_a", f"class First(Event, event_type={name!r}):\n    pass\n")
    with pytest.raises(EventTypeConflictError):
        _define("tests_mod_b", f"class Second(Event, event_type={name!r}):\n    pass\n")
    # A class in the same module with another qualified name is a different class as well.
    with pytest.raises(EventTypeConflictError):
        _define("tests_mod_a", f"class Third(Event, event_type={name!r}):\n    pass\n")


def test_replace_true_takes_the_name_over() -> None:
    name = _unique("Taken")
    first = _define("tests_mod_a", f"class {name}(Event):\n    a: int = 0\n")[name]
    second = _define(
        "tests_mod_b", f"class {name}(Event, replace=True):\n    b: int = 0\n"
    )[name]
    assert first is not second
    assert event_class_for(name) is second
    assert second(b=2).event_type == name


def test_redefining_the_same_class_replaces_it_silently() -> None:
    name = _unique("Again")
    source = f"class {name}(Event):\n    value: int = 0\n"
    first = _define("tests_mod_same", source)[name]
    second = _define("tests_mod_same", source)[name]
    assert first is not second
    assert event_class_for(name) is second


def test_event_type_must_be_a_non_empty_string() -> None:
    with pytest.raises(InvalidInputError):
        _define("tests_mod_a", "class Nameless(Event, event_type=''):\n    pass\n")


# -- events ------------------------------------------------------------------------------------


def test_event_defaults_and_payload() -> None:
    event = MoneyDeposited(amount=Decimal("1.50"))
    assert isinstance(event.event_id, uuid.UUID)
    assert event.timestamp.tzinfo is not None
    assert event.event_version == 1 and event.aggregate_version == 0
    assert event.global_position is None and event.recorded_at is None
    assert event.metadata == {}
    assert event.payload() == {"amount": "1.50"}
    assert MoneyDeposited(amount=Decimal(1)).event_id != event.event_id


def test_naive_timestamps_are_rejected() -> None:
    from datetime import datetime

    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AccountOpened(owner="x", timestamp=datetime(2024, 1, 1))


def test_generic_event_keeps_extra_fields() -> None:
    event = Event(event_type="SomethingElse", colour="blue", size=3)
    assert event.event_type == "SomethingElse"
    assert event.colour == "blue"  # type: ignore[attr-defined]
    assert event.payload() == {"colour": "blue", "size": 3}


# -- aggregates --------------------------------------------------------------------------------


def test_snake_case() -> None:
    assert snake_case("UserEmailChanged") == "user_email_changed"
    assert snake_case("HTTPRequestSent") == "http_request_sent"
    assert snake_case("counter.renamed") == "counter_renamed"
    assert snake_case("user-email.changed") == "user_email_changed"
    assert snake_case("Event2Happened") == "event2_happened"


def test_user_with_explicit_id() -> None:
    user = User(id="user-123")
    assert user.id == "user-123"
    assert user.version == 0
    assert not user.has_uncommitted_events()
    assert User.get_aggregate_type() == "User"


def test_generated_ids_are_distinct_strings() -> None:
    a, b = User(), User()
    assert isinstance(a.id, str) and a.id and a.id != b.id
    uuid.UUID(a.id)


def test_aggregate_type_defaults_to_class_name_or_attribute() -> None:
    assert BankAccount.get_aggregate_type() == "BankAccount"
    assert Warehouse.get_aggregate_type() == "inventory.Warehouse"


def test_apply_dispatches_and_stamps() -> None:
    account = BankAccount(id="acc-1")
    opened = account.open("ann")
    deposited = account.deposit("10.25")
    account.deposit(5)
    assert account.owner == "ann" and account.currency == "EUR"
    assert account.balance == Decimal("15.25")
    assert account.version == 3
    assert (opened.aggregate_id, opened.aggregate_type, opened.aggregate_version) == (
        "acc-1", "BankAccount", 1)
    assert deposited.aggregate_version == 2
    assert [e.aggregate_version for e in account.uncommitted_events] == [1, 2, 3]
    assert account.get_uncommitted_events()[0] is opened


def test_apply_dispatch_uses_event_type_keyword() -> None:
    counter = Counter(id="c")
    counter.rename("first")
    counter.increment(4)
    assert counter.name == "first" and counter.value == 4


def test_missing_handler_names_the_method() -> None:
    account = BankAccount(id="acc-2")
    with pytest.raises(MissingHandlerError) as info:
        account.apply(Incremented(by=1))
    assert "apply_incremented" in str(info.value)
    assert "BankAccount" in str(info.value)
    assert isinstance(info.value, AttributeError) and isinstance(info.value, EventualiError)
    assert account.version == 0 and not account.has_uncommitted_events()


def test_missing_handler_on_replay() -> None:
    event = Incremented(by=1, aggregate_id="x", aggregate_version=1)
    with pytest.raises(MissingHandlerError, match="apply_incremented"):
        BankAccount.from_events([event])


def test_uncommitted_events_are_copies_and_marked_committed() -> None:
    counter = Counter(id="c")
    counter.increment()
    counter.increment()
    events = counter.uncommitted_events
    events.clear()
    assert len(counter.uncommitted_events) == 2
    assert counter.has_uncommitted_events()
    counter.mark_events_as_committed()
    assert counter.uncommitted_events == [] and counter.get_uncommitted_events() == []
    assert not counter.has_uncommitted_events()
    assert counter.version == 2 and counter.value == 2


def test_from_events_rebuilds_without_uncommitted_events() -> None:
    source = BankAccount(id="acc-3")
    source.open("bob")
    source.deposit(7)
    source.withdraw(2)
    rebuilt = BankAccount.from_events(source.uncommitted_events)
    assert rebuilt.id == "acc-3"
    assert rebuilt.owner == "bob" and rebuilt.balance == Decimal(5)
    assert rebuilt.version == 3
    assert not rebuilt.has_uncommitted_events()
    rebuilt.deposit(1)
    assert rebuilt.uncommitted_events[0].aggregate_version == 4


def test_from_events_with_no_events() -> None:
    with pytest.raises(InvalidInputError, match="id="):
        Counter.from_events([])
    empty = Counter.from_events([], id="c-empty")
    assert empty.id == "c-empty" and empty.version == 0


def test_from_events_accepts_an_iterator() -> None:
    source = Counter(id="it")
    for _ in range(3):
        source.increment(2)
    rebuilt = Counter.from_events(iter(source.uncommitted_events))
    assert rebuilt.value == 6 and rebuilt.version == 3


def test_aggregate_rejects_unknown_fields() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        User(id="u", nickname="nope")  # type: ignore[call-arg]


def test_subclass_of_aggregate_defined_inline() -> None:
    class Thing(Aggregate):
        hits: int = 0

        def apply_incremented(self, event: Incremented) -> None:
            self.hits += event.by

    thing = Thing(id="t")
    thing.apply(Incremented(by=3))
    assert thing.hits == 3 and Thing.get_aggregate_type() == "Thing"
