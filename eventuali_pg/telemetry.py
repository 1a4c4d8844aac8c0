"""OpenTelemetry instrumentation: the library's tracer, meter, instruments and the small helpers
the rest of the code calls.

Only ``opentelemetry-api`` is imported: until the application installs the SDK (a
``TracerProvider`` and/or ``MeterProvider``) every span is a non-recording one and every
instrument a no-op, and the helpers skip the work of building attributes and links
(``span.is_recording()``). Names (schema, subscription, event type) are attributes, never parts
of metric names. The README's "Observability" section lists every span and metric.

Conventions: the OpenTelemetry messaging conventions, with the store's schema as
``messaging.destination.name`` and a subscription's id as ``messaging.consumer.group.name``.
Producer spans store their context in each event's metadata (``traceparent``/``tracestate``,
W3C trace context); consumer spans link to it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from .models import Event
    from .store.appender import SaveUnit
    from .stream.stream_event import StreamEvent

__all__ = [
    "MESSAGING_SYSTEM",
    "TRACEPARENT",
    "TRACESTATE",
    "inject_trace_context",
    "linked_span_contexts",
]

try:
    _VERSION = _metadata.version("eventuali-pg")
except _metadata.PackageNotFoundError:  # a checkout on sys.path without an install
    _VERSION = "0"

#: ``messaging.system`` of every span and metric (no registered value fits a database log).
MESSAGING_SYSTEM = "eventuali_pg"
#: The metadata keys the producer's trace context is stored under (W3C trace context).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_tracer = trace.get_tracer("eventuali_pg", _VERSION)
_meter = metrics.get_meter("eventuali_pg", _VERSION)
_propagator = TraceContextTextMapPropagator()
#: A parent context with no span: the writer's and the projections' spans start new traces
#: (their tasks inherited whatever context started them) and link to the producers instead.
_ROOT = otel_context.Context()

# Attribute keys.
SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION = "messaging.destination.name"
CONSUMER_GROUP = "messaging.consumer.group.name"
BATCH_COUNT = "messaging.batch.message_count"
MESSAGE_ID = "messaging.message.id"
ERROR_TYPE = "error.type"
EVENT_TYPE = "eventuali_pg.event.type"
EVENT_TYPES = "eventuali_pg.event.types"
AGGREGATE_TYPES = "eventuali_pg.aggregate.types"
POSITION_FIRST = "eventuali_pg.global_position.first"
POSITION_LAST = "eventuali_pg.global_position.last"
CONSUMER_KIND = "eventuali_pg.consumer.kind"
CHANNEL = "eventuali_pg.channel"

_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

_sent = _meter.create_counter(
    "messaging.client.sent.messages",
    unit="{message}",
    description="Events appended (committed), by event type",
)
_append_duration = _meter.create_histogram(
    "messaging.client.operation.duration",
    unit="s",
    description="Duration of a save, from the call to its outcome (queueing included)",
    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
)
_catch_ups = _meter.create_counter(
    "eventuali_pg.receiver.catch_ups",
    unit="{catch_up}",
    description="Times a receiver started catching up from the table (behind the head)",
)
_overflows = _meter.create_counter(
    "eventuali_pg.receiver.overflows",
    unit="{overflow}",
    description="Times a receiver's buffer was full and it left the live feed",
)
_reconnects = _meter.create_counter(
    "eventuali_pg.listener.reconnects",
    unit="{reconnect}",
    description="LISTEN connections re-established after a loss",
)
_parked = _meter.create_counter(
    "eventuali_pg.dead_letters.parked",
    unit="{event}",
    description="Events a projection parked in the dead-letter table",
)


# -- producers ---------------------------------------------------------------------------------


def _operation_attributes(schema: str, operation: str) -> dict[str, Any]:
    return {SYSTEM: MESSAGING_SYSTEM, OPERATION_NAME: operation, DESTINATION: schema}


@contextlib.contextmanager
def save_span(schema: str, *, transactional: bool = False) -> Iterator[Span]:
    """The span of one save (``append <schema>``, a child of the caller's span), current while
    the block runs so :func:`inject_trace_context` stores *its* context in the events. Records
    the save's duration; an exception is recorded on the span and propagates."""
    start = time.perf_counter()
    error: str | None = None
    with _tracer.start_as_current_span(f"append {schema}", kind=SpanKind.PRODUCER) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    SYSTEM: MESSAGING_SYSTEM,
                    OPERATION_TYPE: "send",
                    OPERATION_NAME: "append",
                    DESTINATION: schema,
                    "eventuali_pg.transactional": transactional,
                }
            )
        try:
            yield span
        except BaseException as exc:
            error = type(exc).__qualname__
            if span.is_recording():
                span.set_attribute(ERROR_TYPE, error)
            raise
        finally:
            attributes = _operation_attributes(schema, "append")
            if error is not None:
                attributes[ERROR_TYPE] = error
            _append_duration.record(time.perf_counter() - start, attributes)


def describe_save(span: Span, unit: SaveUnit) -> None:
    """Put what ``unit`` writes on its save span, and remember the span for the group's link."""
    if not span.is_recording():
        return
    unit.span_context = span.get_span_context()
    events = unit.events
    attributes: dict[str, Any] = {
        BATCH_COUNT: len(events),
        EVENT_TYPES: sorted({event.event_type for event in events}),
        AGGREGATE_TYPES: sorted({event.aggregate_type for event in events}),
    }
    if len(events) == 1:
        attributes[MESSAGE_ID] = str(events[0].event_id)
    span.set_attributes(attributes)


def describe_saved(span: Span, unit: SaveUnit) -> None:
    """Put the positions a committed save took on its span."""
    if span.is_recording() and unit.events and unit.events[0].global_position is not None:
        span.set_attribute(POSITION_FIRST, unit.events[0].global_position)
        span.set_attribute(POSITION_LAST, unit.events[-1].global_position or 0)


def inject_trace_context(events: Iterable[Event]) -> None:
    """Store the current trace context (``traceparent``, ``tracestate``) in the metadata of
    ``events`` that carry none yet; nothing when no span is recording."""
    if not trace.get_current_span().get_span_context().is_valid:
        return
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    if not carrier:
        return
    for event in events:
        if TRACEPARENT not in event.metadata:
            event.metadata.update(carrier)


@contextlib.contextmanager
def group_span(schema: str, units: Sequence[SaveUnit]) -> Iterator[None]:
    """The span of one coalesced append statement (``commit <schema>``): a new trace with a
    link to each save it carries; the saves that failed are recorded on it."""
    with _tracer.start_as_current_span(
        f"commit {schema}",
        context=_ROOT,
        kind=SpanKind.CLIENT,
        record_exception=True,
    ) as span:
        recording = span.is_recording()
        if recording:
            for unit in units:
                if unit.span_context is not None:
                    span.add_link(unit.span_context)
            span.set_attributes(
                {
                    SYSTEM: MESSAGING_SYSTEM,
                    OPERATION_TYPE: "send",
                    OPERATION_NAME: "commit",
                    DESTINATION: schema,
                    BATCH_COUNT: sum(len(unit.events) for unit in units),
                    "eventuali_pg.append.saves": len(units),
                }
            )
        yield
        if recording:
            failed = [unit for unit in units if unit.error is not None]
            span.set_attribute("eventuali_pg.append.failed_saves", len(failed))
            for unit in failed:
                assert unit.error is not None
                span.record_exception(unit.error)


def count_appended(schema: str, units: Iterable[SaveUnit]) -> None:
    """Count the events of committed ``units`` (retries that found them stored excluded)."""
    types: Counter[str] = Counter()
    for unit in units:
        if unit.stored is None:
            types.update(event.event_type for event in unit.events)
    for event_type, count in types.items():
        attributes = _operation_attributes(schema, "append")
        attributes[EVENT_TYPE] = event_type
        _sent.add(count, attributes)


# -- consumers ---------------------------------------------------------------------------------


def linked_span_contexts(events: Iterable[Event]) -> list[SpanContext]:
    """The distinct producer span contexts stored in the metadata of ``events``."""
    seen: dict[tuple[int, int], SpanContext] = {}
    for event in events:
        meta = event.metadata
        if TRACEPARENT not in meta:
            continue
        carrier = {
            key: meta[key] for key in (TRACEPARENT, TRACESTATE) if isinstance(meta.get(key), str)
        }
        context = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
        if context.is_valid:
            seen.setdefault((context.trace_id, context.span_id), context)
    return list(seen.values())


@contextlib.contextmanager
def process_span(
    schema: str,
    consumer: str,
    batch: Sequence[StreamEvent],
    *,
    replaying: bool,
) -> Iterator[Span]:
    """The span of one projection batch (``process <schema>``): a new trace linking every
    producer whose events are in the batch; the handler runs inside it."""
    with _tracer.start_as_current_span(
        f"process {schema}", context=_ROOT, kind=SpanKind.CONSUMER
    ) as span:
        if span.is_recording():
            for context in linked_span_contexts(item.event for item in batch):
                span.add_link(context)
            span.set_attributes(
                {
                    SYSTEM: MESSAGING_SYSTEM,
                    OPERATION_TYPE: "process",
                    OPERATION_NAME: "process",
                    DESTINATION: schema,
                    CONSUMER_GROUP: consumer,
                    BATCH_COUNT: len(batch),
                    POSITION_FIRST: batch[0].global_position,
                    POSITION_LAST: batch[-1].global_position,
                    "eventuali_pg.replaying": replaying,
                }
            )
        yield span


def handler_failed(error: BaseException) -> None:
    """Record a handler's failure (to be retried or parked) on the current span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(error, {"eventuali_pg.handler.failed": True})


@contextlib.contextmanager
def park_span(
    schema: str, consumer: str, event: Event, error: BaseException, attempts: int
) -> Iterator[None]:
    """The span of parking ``event`` in the dead-letter table (``park <schema>``, inside the
    batch's span, linked to the event's producer); counts the parked event once written."""
    links = [Link(context) for context in linked_span_contexts([event])]
    with _tracer.start_as_current_span(f"park {schema}", kind=SpanKind.CLIENT, links=links) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    SYSTEM: MESSAGING_SYSTEM,
                    OPERATION_TYPE: "settle",
                    OPERATION_NAME: "park",
                    DESTINATION: schema,
                    CONSUMER_GROUP: consumer,
                    MESSAGE_ID: str(event.event_id),
                    EVENT_TYPE: event.event_type,
                    POSITION_FIRST: event.global_position or 0,
                    ERROR_TYPE: type(error).__qualname__,
                    "eventuali_pg.attempts": attempts,
                }
            )
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"parked: {type(error).__qualname__}"))
        yield
    attributes = _operation_attributes(schema, "park")
    attributes[CONSUMER_GROUP] = consumer
    attributes[EVENT_TYPE] = event.event_type
    _parked.add(1, attributes)


@contextlib.contextmanager
def catch_up_span(schema: str, consumer: str, after: int, target: int) -> Iterator[Span]:
    """The span of one catch-up page read from the table (``catch_up <schema>``); the caller
    sets the number of events read with :func:`describe_read`."""
    with _tracer.start_as_current_span(f"catch_up {schema}", kind=SpanKind.CLIENT) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    SYSTEM: MESSAGING_SYSTEM,
                    OPERATION_TYPE: "receive",
                    OPERATION_NAME: "catch_up",
                    DESTINATION: schema,
                    CONSUMER_GROUP: consumer,
                    "eventuali_pg.global_position.after": after,
                    "eventuali_pg.catch_up.target": target,
                }
            )
        yield span


def describe_read(span: Span, count: int) -> None:
    """Record how many events a read returned."""
    if span.is_recording():
        span.set_attribute(BATCH_COUNT, count)


def _consumer_attributes(schema: str, consumer: str, kind: str) -> dict[str, Any]:
    return {
        SYSTEM: MESSAGING_SYSTEM,
        DESTINATION: schema,
        CONSUMER_GROUP: consumer,
        CONSUMER_KIND: kind,
    }


def caught_up(schema: str, consumer: str) -> None:
    """Count a receiver starting to catch up from the table."""
    _catch_ups.add(1, _consumer_attributes(schema, consumer, "receiver"))


def overflowed(schema: str, consumer: str) -> None:
    """Count a receiver leaving the live feed because its buffer was full."""
    _overflows.add(1, _consumer_attributes(schema, consumer, "receiver"))


def reconnected(channel: str) -> None:
    """Count a LISTEN connection re-established."""
    _reconnects.add(1, {SYSTEM: MESSAGING_SYSTEM, CHANNEL: channel})


# -- observed from in-memory state -------------------------------------------------------------


class ObservedReceiver(Protocol):
    """What the observable instruments read of a receiver."""

    @property
    def telemetry_name(self) -> str:
        """The name its figures are reported under."""

    @property
    def telemetry_destination(self) -> str:
        """Its store's schema ("" without a store)."""

    @property
    def delivered_count(self) -> int:
        """Events delivered so far."""

    @property
    def lag(self) -> int:
        """Events behind the head of its streamer."""


class ObservedProjection(Protocol):
    """What the observable instruments read of a projection runner."""

    @property
    def telemetry_name(self) -> str:
        """The subscription id its figures are reported under."""

    @property
    def telemetry_destination(self) -> str:
        """Its store's schema."""

    @property
    def lag(self) -> int | None:
        """Events behind the head of its streamer (None when not running)."""


class ObservedFeed(Protocol):
    """What the observable instruments read of a feed."""

    @property
    def telemetry_destination(self) -> str:
        """Its store's schema."""

    queue_usage_requested: bool

    @property
    def notification_queue_usage(self) -> float | None:
        """The last sampled ``pg_notification_queue_usage()`` (None before the first)."""


class _Registry:
    """Live receivers, runners and feeds (weakly held), and the delivered counts of receivers
    that ended: observable counters must never go down. Read from the SDK's collecting thread,
    changed on the event loop: a lock keeps the sets whole."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.receivers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.projections: weakref.WeakSet[Any] = weakref.WeakSet()
        self.feeds: weakref.WeakSet[Any] = weakref.WeakSet()
        self.retired_delivered: Counter[tuple[str, str]] = Counter()

    def snapshot(self, items: weakref.WeakSet[Any]) -> list[Any]:
        with self.lock:
            return list(items)


_registry = _Registry()


def track_receiver(receiver: ObservedReceiver) -> None:
    """Report ``receiver``'s delivered count and lag until :func:`untrack_receiver`."""
    with _registry.lock:
        _registry.receivers.add(receiver)


def untrack_receiver(receiver: ObservedReceiver) -> None:
    """Stop reporting ``receiver``'s lag; keep its delivered events in the running total."""
    with _registry.lock:
        if receiver not in _registry.receivers:
            return
        _registry.receivers.discard(receiver)
        key = (receiver.telemetry_destination, receiver.telemetry_name)
        _registry.retired_delivered[key] += receiver.delivered_count


def track_projection(runner: ObservedProjection) -> None:
    """Report ``runner``'s lag while it is alive."""
    with _registry.lock:
        _registry.projections.add(runner)


def track_feed(feed: ObservedFeed) -> None:
    """Report ``feed``'s sampled NOTIFY queue usage while it is alive."""
    with _registry.lock:
        _registry.feeds.add(feed)


def untrack_feed(feed: ObservedFeed) -> None:
    """Stop reporting ``feed``."""
    with _registry.lock:
        _registry.feeds.discard(feed)


def _observe_delivered(_options: CallbackOptions) -> Iterable[Observation]:
    totals: Counter[tuple[str, str]] = Counter()
    with _registry.lock:
        totals.update(_registry.retired_delivered)
        receivers = list(_registry.receivers)
    for receiver in receivers:
        totals[(receiver.telemetry_destination, receiver.telemetry_name)] += (
            receiver.delivered_count
        )
    for (schema, consumer), count in totals.items():
        attributes = _consumer_attributes(schema, consumer, "receiver")
        attributes[OPERATION_NAME] = "receive"
        yield Observation(count, attributes)


def _observe_lag(_options: CallbackOptions) -> Iterable[Observation]:
    lags: dict[tuple[str, str, str], int] = {}
    for receiver in _registry.snapshot(_registry.receivers):
        key = (receiver.telemetry_destination, receiver.telemetry_name, "receiver")
        lags[key] = max(lags.get(key, 0), receiver.lag)
    for runner in _registry.snapshot(_registry.projections):
        lag = runner.lag
        if lag is not None:
            key = (runner.telemetry_destination, runner.telemetry_name, "projection")
            lags[key] = max(lags.get(key, 0), lag)
    for (schema, consumer, kind), lag in lags.items():
        yield Observation(lag, _consumer_attributes(schema, consumer, kind))


def _observe_queue_usage(_options: CallbackOptions) -> Iterable[Observation]:
    usage: dict[str, float] = {}
    for feed in _registry.snapshot(_registry.feeds):
        feed.queue_usage_requested = True  # sampled by the feed's reader at its next poll tick
        sampled = feed.notification_queue_usage
        if sampled is not None:
            usage[feed.telemetry_destination] = max(
                usage.get(feed.telemetry_destination, 0.0), sampled
            )
    for schema, value in usage.items():
        yield Observation(value, {SYSTEM: MESSAGING_SYSTEM, DESTINATION: schema})


_meter.create_observable_counter(
    "messaging.client.consumed.messages",
    callbacks=[_observe_delivered],
    unit="{message}",
    description="Events delivered to a subscription's receivers",
)
_meter.create_observable_gauge(
    "eventuali_pg.consumer.lag",
    callbacks=[_observe_lag],
    unit="{event}",
    description="Events between the head a consumer knows and the position it has reached",
)
_meter.create_observable_gauge(
    "eventuali_pg.notify.queue_usage",
    callbacks=[_observe_queue_usage],
    unit="1",
    description="pg_notification_queue_usage(): the fraction of the server's NOTIFY queue in use",
)
