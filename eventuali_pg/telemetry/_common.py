"""The library's tracer, meter, propagator, attribute keys and synchronous instruments."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from importlib import metadata as _metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

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

logger = logging.getLogger("eventuali_pg.telemetry")
_warned = False


def _tracing_failed(what: str, name: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "the tracer provider raised while %s span %r (ignored; later failures are logged "
            "at DEBUG): fix the span processor",
            what,
            name,
            exc_info=True,
        )
    else:
        logger.debug("the tracer provider raised while %s span %r", what, name, exc_info=True)


@contextlib.contextmanager
def current_span(
    name: str,
    *,
    kind: SpanKind,
    context: otel_context.Context | None = None,
    links: Sequence[Link] | None = None,
) -> Iterator[Span]:
    """``_tracer.start_as_current_span(name, ...)``, except that the SDK raising when the span
    starts or ends (it passes on what a span processor's ``on_start``/``on_end`` raises) is
    logged and never reaches the instrumented code: a save that committed must return its
    position, a projection must go on."""
    try:
        span = _tracer.start_span(name, context=context, kind=kind, links=links)
    except Exception:
        _tracing_failed("starting", name)
        span = INVALID_SPAN
    try:
        with trace.use_span(span, end_on_exit=False):
            yield span
    finally:
        if span is not INVALID_SPAN:
            try:
                span.end()
            except Exception:
                _tracing_failed("ending", name)


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


def operation_attributes(schema: str, operation: str) -> dict[str, Any]:
    """The attributes of an operation's metrics (a new dict: the caller may add to it)."""
    return {SYSTEM: MESSAGING_SYSTEM, OPERATION_NAME: operation, DESTINATION: schema}


def tracing() -> bool:
    """True once the application has installed a tracer provider (the SDK). Until then the
    helpers skip the API's no-op spans altogether: entering one costs microseconds per save."""
    return not isinstance(trace.get_tracer_provider(), (ProxyTracerProvider, NoOpTracerProvider))


def consumer_attributes(schema: str, consumer: str, kind: str) -> dict[str, Any]:
    return {
        SYSTEM: MESSAGING_SYSTEM,
        DESTINATION: schema,
        CONSUMER_GROUP: consumer,
        CONSUMER_KIND: kind,
    }
