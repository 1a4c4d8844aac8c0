"""Observable instruments: figures read from in-memory state of live receivers, projection
runners and feeds (delivered events, lag, NOTIFY queue usage), never from the database."""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Observation

from ._common import (
    DESTINATION,
    MESSAGING_SYSTEM,
    OPERATION_NAME,
    SYSTEM,
    _meter,
    consumer_attributes,
)


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
        attributes = consumer_attributes(schema, consumer, "receiver")
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
        yield Observation(lag, consumer_attributes(schema, consumer, kind))


def _observe_queue_usage(_options: CallbackOptions) -> Iterable[Observation]:
    usage: dict[str, float] = {}
    for feed in _registry.snapshot(_registry.feeds):
        # The feed samples it at its next read (a wake-up or a poll).
        feed.queue_usage_requested = True
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
