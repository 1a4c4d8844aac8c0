"""``/metrics``: the console's Prometheus exposition, computed at each scrape from the database
(the status report and the subscriptions) and the health report of the console's own store.

Names carry no variable part: subscriptions are a ``subscription`` label.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..health import HealthReport
    from .data import SubscriptionView

#: The content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def exposition(
    report: dict[str, Any], views: list[SubscriptionView], health: HealthReport
) -> bytes:
    """The metrics in Prometheus text format."""
    metrics: list[Metric] = [
        _gauge("eventuali_pg_head_position", "Highest committed global position.", report["head"]),
        _gauge(
            "eventuali_pg_write_rate_events_per_second",
            "Events recorded per second over the last minute.",
            report["events_per_second"],
        ),
        _gauge(
            "eventuali_pg_listen_connections",
            "eventuali-pg LISTEN connections to the database (the console's own included).",
            report["connections"]["listeners"],
        ),
        _gauge(
            "eventuali_pg_healthy",
            "1 when the console's store is healthy (see /health), else 0.",
            1 if health.healthy else 0,
        ),
        _gauge(
            "eventuali_pg_listener_connected",
            "1 while the console's LISTEN connection is up, else 0.",
            1 if health.listener_connected else 0,
        ),
    ]
    if health.notification_queue_usage is not None:
        metrics.append(
            _gauge(
                "eventuali_pg_notification_queue_usage_ratio",
                "Fraction of PostgreSQL's notification queue in use (0 to 1).",
                health.notification_queue_usage,
            )
        )
    if health.published_position is not None:
        metrics.append(
            _gauge(
                "eventuali_pg_feed_published_position",
                "Highest position the console's live feed has published.",
                health.published_position,
            )
        )
    checkpoint = GaugeMetricFamily(
        "eventuali_pg_subscription_checkpoint",
        "Checkpoint (global position reached) of each durable subscription.",
        labels=["subscription"],
    )
    lag = GaugeMetricFamily(
        "eventuali_pg_subscription_lag_events",
        "Events a durable subscription still has to process (head minus checkpoint).",
        labels=["subscription"],
    )
    rate = GaugeMetricFamily(
        "eventuali_pg_subscription_progress_per_second",
        "Global positions per second a subscription advanced over the last samples.",
        labels=["subscription"],
    )
    for view in views:
        checkpoint.add_metric([view.subscription_id], view.checkpoint)
        lag.add_metric([view.subscription_id], view.lag)
        if view.rate is not None:
            rate.add_metric([view.subscription_id], view.rate)
    metrics += [checkpoint, lag, rate]
    dead = report["dead_letters"]
    if dead is not None:
        parked = GaugeMetricFamily(
            "eventuali_pg_dead_letters",
            "Events parked in the dead-letter table, per subscription (sum() for all).",
            labels=["subscription"],
        )
        for subscription_id, count in dead["by_subscription"].items():
            parked.add_metric([subscription_id], count)
        metrics.append(parked)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))
    return generate_latest(registry)
