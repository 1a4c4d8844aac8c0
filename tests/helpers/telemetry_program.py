"""A process of the telemetry tests, with the OpenTelemetry SDK and in-memory exporters.

    python telemetry_program.py produce DSN OUT   # saves inside a "request" span
    python telemetry_program.py consume DSN OUT   # projection, receivers, a reconnect, metrics

Each mode writes what it recorded to OUT as JSON: its spans (name, kind, ids, parent,
attributes, links) and, for ``consume``, every metric data point. The SDK's global providers
are set here, in a process of their own, so the test process never gets them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventuali_pg import (
    Aggregate,
    ConcurrencyError,
    Event,
    EventStore,
    EventStreamer,
    Subscription,
)
from eventuali_pg.projections import Projection, ProjectionRunner

exporter = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(tracer_provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


class OtelOrderPlaced(Event, event_type="otel.OrderPlaced"):
    amount: int = 0


class OtelOrderShipped(Event, event_type="otel.OrderShipped"):
    poison: bool = False


class OtelOrder(Aggregate):
    aggregate_type = "otel.Order"

    def place(self, amount: int) -> None:
        self.apply(OtelOrderPlaced(amount=amount))

    def ship(self, *, poison: bool = False) -> None:
        self.apply(OtelOrderShipped(poison=poison))

    def apply_otel_order_placed(self, event: OtelOrderPlaced) -> None:
        pass

    def apply_otel_order_shipped(self, event: OtelOrderShipped) -> None:
        pass


class Shipping(Projection):
    """Handles every event; an event marked ``poison`` always fails (and is parked)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    async def handle_event(self, event: Event) -> None:
        if getattr(event, "poison", False):
            raise ValueError(f"poison event at {event.global_position}")
        self.seen.append(event.global_position or 0)


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in span.links
        ],
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }


def _metrics() -> list[dict[str, Any]]:
    data = reader.get_metrics_data()
    points: list[dict[str, Any]] = []
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = getattr(point, "count", None)
                    points.append(
                        {
                            "name": metric.name,
                            "unit": metric.unit,
                            "attributes": dict(point.attributes or {}),
                            "value": value,
                        }
                    )
    return points


def _write(out: str, **parts: Any) -> None:
    spans = [_span(span) for span in exporter.get_finished_spans()]
    Path(out).write_text(json.dumps({"spans": spans, **parts}, default=str))


async def produce(dsn: str, out: str) -> None:
    tracer = trace.get_tracer("telemetry-test")
    async with await EventStore.create(dsn) as store:
        with tracer.start_as_current_span("request"):
            order = OtelOrder(id="order-1")
            order.place(10)
            order.ship()
            await store.save(order)
            # Concurrent saves: the writer coalesces them into groups of several.
            others = []
            for n in range(2, 6):
                other = OtelOrder(id=f"order-{n}")
                other.place(n)
                others.append(other)
            await asyncio.gather(*(store.save(other) for other in others))
            # A poisoned event, for the consumer's dead-letter table.
            poisoned = OtelOrder(id="order-poisoned")
            poisoned.ship(poison=True)
            await store.save(poisoned)
            # A conflict: the save fails, and says so on its span.
            first = await store.load(OtelOrder, "order-2")
            second = await store.load(OtelOrder, "order-2")
            assert first is not None and second is not None
            first.ship()
            second.ship()
            await store.save(first)
            try:
                await store.save(second)
            except ConcurrencyError:
                pass
            else:
                raise AssertionError("the second save should have conflicted")
        with tracer.start_as_current_span("request in a transaction"):
            async with store.transaction() as tx:
                in_tx = OtelOrder(id="order-tx")
                in_tx.place(7)
                await tx.save(in_tx)
            async with store.connection() as conn, conn.transaction():
                caller_tx = OtelOrder(id="order-caller-tx")
                caller_tx.place(8)
                await store.save(caller_tx, connection=conn)
    _write(out)


async def _wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (figures read from memory; nothing to await)
            await asyncio.sleep(0.05)
    assert condition(), what


async def consume(dsn: str, out: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        head = await store.get_global_position()
        projection = Shipping()
        runner = ProjectionRunner(
            store,
            projection,
            subscription_id="shipping",
            max_attempts=2,
            retry_delay=0.01,
        )
        await runner.start()
        try:
            await runner.wait_for_position(head, timeout=30)
            # A catch-up from the start of history, and a receiver that overflows.
            streamer = EventStreamer(capacity=2)
            await store.attach_streamer(streamer)
            history = await streamer.subscribe(Subscription(id="history", from_position=0))
            slow = await streamer.subscribe(Subscription(id="slow"))
            anonymous = await streamer.subscribe(Subscription(from_position=head - 1))
            await anonymous.recv(timeout=10)
            got = [await history.recv(timeout=10) for _ in range(head)]
            assert [item.global_position for item in got] == list(range(1, head + 1))
            # Appended here: events appended, append duration; the slow receiver overflows.
            order = OtelOrder(id="order-consumer")
            for amount in range(5):
                order.place(amount)
            position = await store.save(order)
            assert position is not None
            await runner.wait_for_position(position, timeout=30)
            for _ in range(5):
                await slow.recv(timeout=10)
            assert slow.stats().overflows >= 1
            # A lost LISTEN connection: the feed reconnects.
            pid = store.listener_pid
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await conn.close()
            await _wait_for(lambda: (store.stats() or _no_stats()).reconnects >= 1, "a reconnect")
            # The NOTIFY queue usage is sampled after a metric reader asked for it.
            reader.collect()
            feed: Any = store.existing_resource("feed")
            await _wait_for(lambda: feed.notification_queue_usage is not None, "queue usage")
            dead = await runner.dead_letters()
            points = _metrics()
            await history.close()
            await slow.close()
            await anonymous.close()
        finally:
            await runner.stop()
    _write(out, metrics=points, dead_letters=[letter.global_position for letter in dead], head=head)


def _no_stats() -> Any:
    raise AssertionError("the store has no feed")


def main(argv: Sequence[str]) -> None:
    mode, dsn, out = argv
    asyncio.run(produce(dsn, out) if mode == "produce" else consume(dsn, out))
    tracer_provider.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
