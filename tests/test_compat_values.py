"""Issue 15, item 5: values upstream eventuali accepts: UUID causation/correlation ids, naive
timestamps (refused with the fix), acronym handler names, events and aggregates with a custom
``__init__`` as upstream's examples write them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from eventuali_pg import Aggregate, Event, EventStore, InvalidEventError, InvalidInputError


class CompatValNoted(Event):
    text: str


class HTTPRequestSent(Event):
    url: str


class SLAViolation(Event):
    sla: str


class CompatValLineAdded(Event):
    """An event with a custom __init__ filling a derived field, as upstream's examples do."""

    product: str
    quantity: int
    unit_price: float
    total: float = 0.0

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.total = self.quantity * self.unit_price


class CompatValNotebook(Aggregate):
    OPEN: ClassVar[str] = "open"
    notes: list[str] = []  # noqa: RUF012 (upstream examples write it so)
    lines: list[dict[str, Any]] = []  # noqa: RUF012
    status: str = ""
    requests: int = 0
    violations: int = 0

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if "notes" not in data:
            self.notes = []
        if "lines" not in data:
            self.lines = []

    def apply_compat_val_noted(self, event: CompatValNoted) -> None:
        self.notes.append(event.text)
        self.status = self.OPEN

    def apply_compat_val_line_added(self, event: CompatValLineAdded) -> None:
        self.lines.append({"product": event.product, "total": event.total})

    def apply_http_request_sent(self, event: HTTPRequestSent) -> None:
        self.requests += 1

    # upstream eventuali's spelling of the handler for SLAViolation
    def apply_s_l_a_violation(self, event: SLAViolation) -> None:
        self.violations += 1


async def test_uuid_causation_and_correlation_ids_are_stored_as_text(dsn: str) -> None:
    cause, correlation = uuid.uuid4(), uuid.uuid4()
    async with await EventStore.create(dsn) as store:
        notebook = CompatValNotebook(id="nb-uuid")
        notebook.apply(
            CompatValNoted(text="a", causation_id=cause, correlation_id=correlation)
        )
        await store.save(notebook)
        [loaded] = await store.load_events("nb-uuid")
    assert loaded.causation_id == str(cause) and loaded.correlation_id == str(correlation)
    assert uuid.UUID(loaded.causation_id) == cause  # documented: they load back as text


def test_naive_timestamps_are_refused_with_the_fix_in_the_message() -> None:
    with pytest.raises(ValidationError, match=r"datetime\.now\(timezone\.utc\)"):
        CompatValNoted(text="x", timestamp=datetime(2025, 1, 1))
    with pytest.raises(ValidationError, match="has no time zone"):
        CompatValNoted(text="x", timestamp="2025-01-01T00:00:00")
    event = CompatValNoted(text="x")
    event.timestamp = datetime(2025, 1, 1)  # assignment is not validated; apply checks it
    with pytest.raises(InvalidEventError, match=r"replace\(tzinfo=timezone\.utc\)"):
        CompatValNotebook().apply(event)
    aware = CompatValNoted(text="x", timestamp="2025-01-01T00:00:00+00:00")
    assert aware.timestamp == datetime(2025, 1, 1, tzinfo=UTC)


def test_acronym_event_types_find_both_handler_spellings() -> None:
    notebook = CompatValNotebook()
    notebook.apply(HTTPRequestSent(url="https://example.org"))  # apply_http_request_sent
    notebook.apply(SLAViolation(sla="uptime"))  # upstream's apply_s_l_a_violation
    assert (notebook.requests, notebook.violations) == (1, 1)


def test_a_missing_acronym_handler_names_both_spellings() -> None:
    class CompatValEmpty(Aggregate):
        pass

    with pytest.raises(NotImplementedError) as info:
        CompatValEmpty().apply(HTTPRequestSent(url="u"))
    assert "apply_http_request_sent" in str(info.value)
    assert "apply_h_t_t_p_request_sent" in str(info.value)


async def test_custom_init_events_and_aggregates_round_trip(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        notebook = CompatValNotebook(id="nb-init")
        notebook.apply(CompatValLineAdded(product="pen", quantity=3, unit_price=1.5))
        notebook.apply(CompatValNoted(text="paid"))
        assert notebook.lines == [{"product": "pen", "total": 4.5}]
        await store.save(notebook)
        loaded = await store.load(CompatValNotebook, "nb-init")
    assert loaded is not None
    assert loaded.lines == [{"product": "pen", "total": 4.5}]
    assert loaded.notes == ["paid"] and loaded.status == "open" and loaded.version == 2
    # a fresh instance does not share the class-level default list
    assert CompatValNotebook().notes == []


class CompatValTextStamped(Event):
    """Redeclares the envelope's timestamp as text, as some upstream examples do."""

    timestamp: str  # type: ignore[assignment]
    metric: str = ""


async def test_a_text_timestamp_is_fine_in_memory_and_refused_on_save(dsn: str) -> None:
    event = CompatValTextStamped(timestamp=datetime.now(UTC).isoformat(), metric="cpu")
    assert isinstance(event.timestamp, str)

    class CompatValMetrics(Aggregate):
        def apply_compat_val_text_stamped(self, event: Event) -> None:
            pass

    metrics = CompatValMetrics(id="metrics-1")
    metrics.apply(event)
    async with await EventStore.create(dsn) as store:
        with pytest.raises(InvalidInputError, match="timezone-aware datetime"):
            await store.save(metrics)
        assert await store.load_events("metrics-1") == []


def test_decoding_does_not_go_through_the_construction_hook() -> None:
    # Stored rows are validated straight by pydantic-core; the hook that converts upstream's
    # values runs for Event(...) only (structural check; no timing).
    assert not Event.__pydantic_custom_init__
    assert not CompatValNoted.__pydantic_custom_init__
    assert CompatValLineAdded.__pydantic_custom_init__  # an application's own __init__ still runs
    event = CompatValNoted.model_validate(
        {"text": "t", "causation_id": "c-1", "timestamp": datetime(2025, 1, 1, tzinfo=UTC)}
    )
    assert event.causation_id == "c-1"
