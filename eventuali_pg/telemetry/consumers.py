"""Spans and counters of consumers: projection batches linked to their producers, dead-letter
parking, catch-up reads, catch-ups, overflows and reconnects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from ..models import Event
    from ..stream.stream_event import StreamEvent

from ._common import (
    _ROOT,
    BATCH_COUNT,
    CHANNEL,
    CONSUMER_GROUP,
    DESTINATION,
    ERROR_TYPE,
    EVENT_TYPE,
    MESSAGE_ID,
    MESSAGING_SYSTEM,
    OPERATION_NAME,
    OPERATION_TYPE,
    POSITION_FIRST,
    POSITION_LAST,
    SYSTEM,
    TRACEPARENT,
    TRACESTATE,
    _catch_ups,
    _overflows,
    _parked,
    _propagator,
    _reconnects,
    consumer_attributes,
    current_span,
    operation_attributes,
)


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
    with current_span(f"process {schema}", context=_ROOT, kind=SpanKind.CONSUMER) as span:
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
    with current_span(f"park {schema}", kind=SpanKind.CLIENT, links=links) as span:
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
    attributes = operation_attributes(schema, "park")
    attributes[CONSUMER_GROUP] = consumer
    attributes[EVENT_TYPE] = event.event_type
    _parked.add(1, attributes)


@contextlib.contextmanager
def catch_up_span(schema: str, consumer: str, after: int, target: int) -> Iterator[Span]:
    """The span of one catch-up page read from the table (``catch_up <schema>``); the caller
    sets the number of events read with :func:`describe_read`."""
    with current_span(f"catch_up {schema}", kind=SpanKind.CLIENT) as span:
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


def caught_up(schema: str, consumer: str) -> None:
    """Count a receiver starting to catch up from the table."""
    _catch_ups.add(1, consumer_attributes(schema, consumer, "receiver"))


def overflowed(schema: str, consumer: str) -> None:
    """Count a receiver leaving the live feed because its buffer was full."""
    _overflows.add(1, consumer_attributes(schema, consumer, "receiver"))


def reconnected(channel: str) -> None:
    """Count a LISTEN connection re-established."""
    _reconnects.add(1, {SYSTEM: MESSAGING_SYSTEM, CHANNEL: channel})
