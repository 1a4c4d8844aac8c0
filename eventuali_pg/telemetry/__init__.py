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

from ._common import MESSAGING_SYSTEM, TRACEPARENT, TRACESTATE
from .consumers import (
    catch_up_span,
    caught_up,
    describe_read,
    handler_failed,
    linked_span_contexts,
    overflowed,
    park_span,
    process_span,
    reconnected,
)
from .observed import (
    ObservedFeed,
    ObservedProjection,
    ObservedReceiver,
    track_feed,
    track_projection,
    track_receiver,
    untrack_feed,
    untrack_receiver,
)
from .producers import (
    count_appended,
    describe_save,
    describe_saved,
    group_span,
    inject_trace_context,
    save_span,
)

__all__ = [
    "MESSAGING_SYSTEM",
    "TRACEPARENT",
    "TRACESTATE",
    "ObservedFeed",
    "ObservedProjection",
    "ObservedReceiver",
    "catch_up_span",
    "caught_up",
    "count_appended",
    "describe_read",
    "describe_save",
    "describe_saved",
    "group_span",
    "handler_failed",
    "inject_trace_context",
    "linked_span_contexts",
    "overflowed",
    "park_span",
    "process_span",
    "reconnected",
    "save_span",
    "track_feed",
    "track_projection",
    "track_receiver",
    "untrack_feed",
    "untrack_receiver",
]
