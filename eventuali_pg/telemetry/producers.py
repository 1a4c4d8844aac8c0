"""Spans and metrics of saves: the save span, the trace context stored in events, the writer's
statement span, appended events."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind

if TYPE_CHECKING:
    from ..models import Event
    from ..store.appender import SaveUnit

from ._common import (
    _ROOT,
    AGGREGATE_TYPES,
    BATCH_COUNT,
    DESTINATION,
    ERROR_TYPE,
    EVENT_TYPE,
    EVENT_TYPES,
    MESSAGE_ID,
    MESSAGING_SYSTEM,
    OPERATION_NAME,
    OPERATION_TYPE,
    POSITION_FIRST,
    POSITION_LAST,
    SYSTEM,
    TRACEPARENT,
    _append_duration,
    _propagator,
    _sent,
    current_span,
    operation_attributes,
    tracing,
)


@contextlib.contextmanager
def save_span(schema: str, *, transactional: bool = False) -> Iterator[Span]:
    """The span of one save (``append <schema>``, a child of the caller's span), current while
    the block runs so :func:`inject_trace_context` stores *its* context in the events. Records
    the save's duration; an exception is recorded on the span and propagates."""
    start = time.perf_counter()
    if not tracing():
        try:
            yield INVALID_SPAN
        except BaseException as exc:
            _append_duration.record(time.perf_counter() - start, _failed(schema, exc))
            raise
        _append_duration.record(time.perf_counter() - start, _append_attributes(schema))
        return
    error: BaseException | None = None
    with current_span(f"append {schema}", kind=SpanKind.PRODUCER) as span:
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
            error = exc
            if span.is_recording():
                span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            raise
        finally:
            attributes = _append_attributes(schema) if error is None else _failed(schema, error)
            _append_duration.record(time.perf_counter() - start, attributes)


_APPEND_ATTRIBUTES: dict[str, dict[str, Any]] = {}


def _append_attributes(schema: str) -> dict[str, Any]:
    # Built once per schema: a save's metrics build no dict.
    attributes = _APPEND_ATTRIBUTES.get(schema)
    if attributes is None:
        attributes = _APPEND_ATTRIBUTES[schema] = operation_attributes(schema, "append")
    return attributes


def _failed(schema: str, error: BaseException) -> dict[str, Any]:
    return {**_append_attributes(schema), ERROR_TYPE: type(error).__qualname__}


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
    if not tracing():
        yield
        return
    with current_span(f"commit {schema}", context=_ROOT, kind=SpanKind.CLIENT) as span:
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
            for event in unit.events:
                types[event.event_type] += 1
    for event_type, count in types.items():
        _sent.add(count, {**_append_attributes(schema), EVENT_TYPE: event_type})
