"""OpenTelemetry: spans, the trace context stored in events, and metrics.

The SDK's global providers can be set once per process, and events saved with one recording
carry a ``traceparent``: so the instrumented workloads run in processes of their own
(``helpers/telemetry_program.py``) with in-memory exporters, and report what they recorded. A
producer process saves inside a "request" span; a consumer process runs a projection whose
processing span must link to the producer's save spans.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions

from eventuali_pg import Aggregate, Event, EventStore, EventStreamer, Subscription
from eventuali_pg.telemetry import TRACEPARENT, inject_trace_context, linked_span_contexts
from eventuali_pg.telemetry.observed import _observe_delivered

PROGRAM = Path(__file__).parent / "helpers" / "telemetry_program.py"

#: Every metric the library reports (see the README, "Observability").
METRICS = {
    "messaging.client.sent.messages",
    "messaging.client.operation.duration",
    "messaging.client.consumed.messages",
    "eventuali_pg.consumer.lag",
    "eventuali_pg.receiver.catch_ups",
    "eventuali_pg.receiver.overflows",
    "eventuali_pg.listener.reconnects",
    "eventuali_pg.dead_letters.parked",
    "eventuali_pg.notify.queue_usage",
}


async def _run(mode: str, dsn: str, out: Path) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROGRAM),
        mode,
        dsn,
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, f"{mode} failed:\n{stdout.decode()}\n{stderr.decode()}"
    result: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    return result


def _named(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"] == name]


async def test_save_spans_and_the_trace_context_in_events(dsn: str, tmp_path: Path) -> None:
    produced = await _run("produce", dsn, tmp_path / "produce.json")
    spans = produced["spans"]
    (request,) = _named(spans, "request")
    appends = _named(spans, "append eventuali")
    plain = [span for span in appends if not span["attributes"]["eventuali_pg.transactional"]]
    # One span per save, each a child of the request that saved.
    assert len(plain) == 8
    assert {span["parent_span_id"] for span in plain} == {request["span_id"]}
    assert {span["trace_id"] for span in plain} == {request["trace_id"]}
    first = plain[0]["attributes"]
    assert first["messaging.system"] == "eventuali_pg"
    assert first["messaging.operation.type"] == "send"
    assert first["messaging.destination.name"] == "eventuali"
    assert first["messaging.batch.message_count"] == 2
    assert first["eventuali_pg.event.types"] == ["otel.OrderPlaced", "otel.OrderShipped"]
    assert first["eventuali_pg.aggregate.types"] == ["otel.Order"]
    assert (
        first["eventuali_pg.global_position.first"],
        first["eventuali_pg.global_position.last"],
    ) == (1, 2)
    assert plain[0]["kind"] == "PRODUCER"

    # The conflicting save: its span carries the error.
    (failed,) = [span for span in plain if span["status"] == "ERROR"]
    assert failed["attributes"]["error.type"] == "ConcurrencyError"
    assert "exception" in failed["events"]

    # The transactional save has its own span, in the trace of its request.
    (tx_request,) = _named(spans, "request in a transaction")
    in_tx, caller_tx = [
        span for span in appends if span["attributes"]["eventuali_pg.transactional"]
    ]
    assert in_tx["parent_span_id"] == caller_tx["parent_span_id"] == tx_request["span_id"]

    # The writer's statements: new traces, each linked to the saves it carried; the four
    # concurrent saves shared statements.
    commits = _named(spans, "commit eventuali")
    assert all(span["parent_span_id"] is None for span in commits)
    linked = {link["span_id"] for span in commits for link in span["links"]}
    assert linked == {span["span_id"] for span in plain}
    assert max(span["attributes"]["eventuali_pg.append.saves"] for span in commits) > 1
    assert sum(span["attributes"]["eventuali_pg.append.failed_saves"] for span in commits) == 1

    # Every stored event carries the context of the span of the save that wrote it.
    async with await EventStore.create(dsn) as store:
        events = await store.load_events_from_position(0)
    by_position = {
        position: span["span_id"]
        for span in [*plain, in_tx]
        if "eventuali_pg.global_position.first" in span["attributes"]
        for position in range(
            span["attributes"]["eventuali_pg.global_position.first"],
            span["attributes"]["eventuali_pg.global_position.last"] + 1,
        )
    }
    for event in events:
        traceparent = event.metadata[TRACEPARENT]
        _, trace_id, span_id, _ = traceparent.split("-")
        if event.global_position in by_position:
            assert span_id == by_position[event.global_position]
        else:  # the transactions' events: their positions come with the commit
            assert span_id in {in_tx["span_id"], caller_tx["span_id"]}
        assert trace_id in {request["trace_id"], tx_request["trace_id"]}


async def test_processing_links_to_the_producing_save_across_processes(
    dsn: str, tmp_path: Path
) -> None:
    produced = await _run("produce", dsn, tmp_path / "produce.json")
    consumed = await _run("consume", dsn, tmp_path / "consume.json")
    saves = {
        (span["trace_id"], span["span_id"]): span
        for span in _named(produced["spans"], "append eventuali")
    }
    processed = [
        span
        for span in _named(consumed["spans"], "process eventuali")
        if span["attributes"]["messaging.consumer.group.name"] == "shipping"
    ]
    assert processed
    first = processed[0]
    assert first["kind"] == "CONSUMER"
    assert first["parent_span_id"] is None
    attributes = first["attributes"]
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == "eventuali"
    assert attributes["eventuali_pg.global_position.first"] == 1
    links = {(link["trace_id"], link["span_id"]) for span in processed for link in span["links"]}
    # Every save of the producer that committed is linked, in the producer's traces.
    committed = {key for key, span in saves.items() if span["status"] != "ERROR"}
    assert committed <= links
    (request,) = _named(produced["spans"], "request")
    assert request["trace_id"] in {trace_id for trace_id, _ in links}

    # The poisoned event was parked, inside the processing span, linked to its save.
    assert consumed["dead_letters"] == [7]
    (park,) = _named(consumed["spans"], "park eventuali")
    assert park["attributes"]["messaging.operation.type"] == "settle"
    assert park["attributes"]["error.type"] == "ValueError"
    assert park["status"] == "ERROR"
    assert park["parent_span_id"] in {span["span_id"] for span in processed}
    (poisoned_save,) = [
        span
        for span in saves.values()
        if span["attributes"].get("eventuali_pg.global_position.first") == 7
    ]
    assert park["links"] == [
        {"trace_id": poisoned_save["trace_id"], "span_id": poisoned_save["span_id"]}
    ]

    # Catch-up reads from the table have spans too.
    catch_ups = _named(consumed["spans"], "catch_up eventuali")
    history = [
        span
        for span in catch_ups
        if span["attributes"]["messaging.consumer.group.name"] == "history"
    ]
    assert history and history[0]["attributes"]["messaging.batch.message_count"] > 0


async def test_every_metric_has_a_value_after_a_short_workload(dsn: str, tmp_path: Path) -> None:
    await _run("produce", dsn, tmp_path / "produce.json")
    consumed = await _run("consume", dsn, tmp_path / "consume.json")
    points = consumed["metrics"]
    assert {point["name"] for point in points} >= METRICS

    def values(name: str, **attributes: Any) -> list[Any]:
        return [
            point["value"]
            for point in points
            if point["name"] == name
            and all(point["attributes"].get(key) == value for key, value in attributes.items())
        ]

    # Names are attributes, never parts of metric names.
    assert all(point["name"] in METRICS for point in points)
    assert values(
        "messaging.client.sent.messages",
        **{
            "eventuali_pg.event.type": "otel.OrderPlaced",
            "messaging.destination.name": "eventuali",
        },
    ) == [5]
    assert values("messaging.client.operation.duration") == [1]  # one save, one measurement
    assert values(
        "messaging.client.consumed.messages", **{"messaging.consumer.group.name": "history"}
    ) == [consumed["head"]]  # read up to the head, then left alone
    assert values(
        "messaging.client.consumed.messages", **{"messaging.consumer.group.name": "shipping"}
    ) == [consumed["head"] + 5]
    # Generated subscription ids share one name: the series stay a bounded set.
    assert values(
        "messaging.client.consumed.messages", **{"messaging.consumer.group.name": "(generated)"}
    ) == [1]
    assert values(
        "eventuali_pg.consumer.lag",
        **{"messaging.consumer.group.name": "shipping", "eventuali_pg.consumer.kind": "projection"},
    ) == [0]
    assert values(
        "eventuali_pg.receiver.overflows", **{"messaging.consumer.group.name": "slow"}
    ) == [1]
    assert values(
        "eventuali_pg.receiver.catch_ups", **{"messaging.consumer.group.name": "history"}
    ) == [1]
    assert values("eventuali_pg.listener.reconnects") == [1]
    assert values(
        "eventuali_pg.dead_letters.parked",
        **{
            "messaging.consumer.group.name": "shipping",
            "eventuali_pg.event.type": "otel.OrderShipped",
        },
    ) == [1]
    (usage,) = values("eventuali_pg.notify.queue_usage")
    assert 0.0 <= usage <= 1.0


class Noted(Event, event_type="otel.Noted"):
    text: str = ""


class Notebook(Aggregate):
    aggregate_type = "otel.Notebook"

    def note(self, text: str) -> None:
        self.apply(Noted(text=text))

    def apply_otel_noted(self, event: Noted) -> None:
        pass


async def test_without_the_sdk_events_carry_no_trace_context(dsn: str) -> None:
    # This test process never installs the SDK: every span is a no-op.
    assert not trace.get_current_span().get_span_context().is_valid
    async with await EventStore.create(dsn) as store:
        book = Notebook(id="book-1")
        book.note("hello")
        await store.save(book)
        (stored,) = await store.load_events("book-1")
    assert stored.metadata == {}


def test_a_given_traceparent_is_kept_and_read_back() -> None:
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = Noted(text="x", metadata={TRACEPARENT: given})
    inject_trace_context([event])  # no span is current: nothing changes
    assert event.metadata == {TRACEPARENT: given}
    (context,) = linked_span_contexts([event, Noted(metadata={TRACEPARENT: given}), Noted()])
    assert format(context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(context.span_id, "016x") == "b7ad6b7169203331"
    assert linked_span_contexts([Noted(metadata={TRACEPARENT: "garbage"})]) == []


async def test_delivered_counts_never_go_down_when_receivers_end(dsn: str) -> None:
    # The observable counter's callback reads in-memory figures: callable without the SDK.
    def delivered() -> dict[tuple[str, str], int]:
        return {
            (
                point.attributes["messaging.destination.name"],
                point.attributes["messaging.consumer.group.name"],
            ): point.value
            for point in _observe_delivered(CallbackOptions())
            if point.attributes is not None
            and point.attributes["messaging.consumer.group.name"] == "otel-ended"
        }

    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receiver = await streamer.subscribe(Subscription(id="otel-ended", from_position=0))
        book = Notebook(id="book-2")
        book.note("one")
        book.note("two")
        await store.save(book)
        for _ in range(2):
            await receiver.recv(timeout=10)
        assert delivered() == {("eventuali", "otel-ended"): 2}
        await receiver.close()
        second = await streamer.subscribe(Subscription(id="otel-ended", from_position=0))
        await second.recv(timeout=10)
        assert delivered() == {("eventuali", "otel-ended"): 3}  # 2 of the ended one, 1 new
    # The store closed: every receiver ended, detached from it; the total stays in its series.
    assert receiver.closed and second.closed
    assert delivered() == {("eventuali", "otel-ended"): 3}
