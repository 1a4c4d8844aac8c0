"""The health of an event store as this process sees it: ``await store.health()``.

One :class:`HealthReport` gathers what a probe needs: whether the database answers, whether the
store's LISTEN connection is up, how far the live feed has published against the head, the
durable subscription furthest behind, how full PostgreSQL's notification queue is, and the live
feed's last read error. ``report.healthy`` is True when ``report.reasons`` is empty; each
reason is one sentence saying what is wrong.

It lives outside ``store/`` because it reads the live feed (a ``stream/`` object the store only
keeps as a resource); :meth:`EventStore.health` imports it lazily.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._db import database_errors
from .errors import EventualiError, InvalidInputError
from .store.replica_reads import ReplicaStats

if TYPE_CHECKING:
    from .store.event_store import EventStore

__all__ = [
    "DEFAULT_MAX_NOTIFICATION_QUEUE_USAGE",
    "FeedError",
    "HealthReport",
    "SubscriptionLag",
    "check_health",
]

#: Above this fraction of PostgreSQL's notification queue in use, the store is unhealthy: a
#: listening session that does not consume its notifications (a long transaction) fills it,
#: and NOTIFY (so every append) fails once it is full.
DEFAULT_MAX_NOTIFICATION_QUEUE_USAGE = 0.5

#: The feed resource's key in the store (see :mod:`eventuali_pg.stream.feed`).
_FEED_RESOURCE = "feed"


@dataclass(frozen=True)
class SubscriptionLag:
    """The durable subscription checkpoint furthest behind the head."""

    subscription_id: str
    checkpoint: int
    lag: int


@dataclass(frozen=True)
class FeedError:
    """The live feed's newest failed read; ``current`` while no read has succeeded since."""

    message: str
    at: datetime
    current: bool


@dataclass(frozen=True)
class HealthReport:
    """What :meth:`EventStore.health` found. ``healthy`` is True when ``reasons`` is empty.

    ``listener_connected`` is None when this process has no live feed (no streamer attached)
    or runs poll-only (``notify=False``); ``published_position`` and ``feed_behind`` (head minus
    published) are None without a feed. ``oldest_lag`` is None when no durable subscription has
    a checkpoint; ``head``, ``oldest_lag`` and ``notification_queue_usage`` (0.0 to 1.0) are
    None when the database did not answer.
    """

    checked_at: datetime
    database_reachable: bool
    head: int | None
    feed_running: bool
    listener_connected: bool | None
    listener_reconnects: int
    published_position: int | None
    feed_behind: int | None
    oldest_lag: SubscriptionLag | None
    notification_queue_usage: float | None
    last_feed_error: FeedError | None
    max_lag: int | None
    max_notification_queue_usage: float
    reasons: tuple[str, ...] = field(default=())
    #: Each read replica's head and lag behind the primary in events, measured by this check
    #: (empty without ``replica_dsn``). A replica that is down or far behind is reported, not
    #: counted as unhealthy: reads fall back to the primary.
    replicas: tuple[ReplicaStats, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        """True when nothing is wrong (``reasons`` is empty)."""
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``/health`` and ``status --check --json``)."""
        error = self.last_feed_error
        lag = self.oldest_lag
        return {
            "healthy": self.healthy,
            "reasons": list(self.reasons),
            "checked_at": self.checked_at.isoformat(),
            "database_reachable": self.database_reachable,
            "head": self.head,
            "feed_running": self.feed_running,
            "listener_connected": self.listener_connected,
            "listener_reconnects": self.listener_reconnects,
            "published_position": self.published_position,
            "feed_behind": self.feed_behind,
            "oldest_lag": (
                {
                    "subscription_id": lag.subscription_id,
                    "checkpoint": lag.checkpoint,
                    "lag": lag.lag,
                }
                if lag is not None
                else None
            ),
            "notification_queue_usage": self.notification_queue_usage,
            "last_feed_error": (
                {"message": error.message, "at": error.at.isoformat(), "current": error.current}
                if error is not None
                else None
            ),
            "max_lag": self.max_lag,
            "max_notification_queue_usage": self.max_notification_queue_usage,
            "replicas": [asdict(replica) for replica in self.replicas],
        }


def _check_limits(max_lag: int | None, max_usage: float, timeout: float) -> None:
    if max_lag is not None and (
        isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 0
    ):
        raise InvalidInputError(f"max_lag must be an integer >= 0 or None, got {max_lag!r}")
    if (
        isinstance(max_usage, bool)
        or not isinstance(max_usage, (int, float))
        or not (0 < max_usage <= 1)
    ):
        raise InvalidInputError(
            f"max_notification_queue_usage must be a fraction in (0, 1], got {max_usage!r}"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidInputError(f"timeout must be a number of seconds > 0, got {timeout!r}")


async def check_health(
    store: EventStore,
    *,
    max_lag: int | None = None,
    max_notification_queue_usage: float = DEFAULT_MAX_NOTIFICATION_QUEUE_USAGE,
    timeout: float = 5.0,
) -> HealthReport:
    """The :class:`HealthReport` of ``store`` (see :meth:`EventStore.health`)."""
    _check_limits(max_lag, max_notification_queue_usage, timeout)
    from .stream.feed import StoreFeed

    reasons: list[str] = []
    head: int | None = None
    usage: float | None = None
    oldest: SubscriptionLag | None = None
    reachable = True
    schema = store.schema  # validated when the store was created
    try:
        async with asyncio.timeout(timeout), store.connection() as conn:
            with database_errors(store.dsn):
                row = await conn.fetchrow(
                    f"SELECT (SELECT position FROM {schema}.global_sequence WHERE id = 1) AS head, "
                    "pg_notification_queue_usage() AS usage"
                )
                oldest_row = await conn.fetchrow(
                    f"SELECT subscription_id, position FROM {schema}.checkpoints "
                    "ORDER BY position, subscription_id LIMIT 1"
                )
    except TimeoutError:
        reachable = False
        reasons.append(f"the database did not answer within {timeout:g} s")
    except (EventualiError, OSError) as exc:
        reachable = False
        reasons.append(f"the database cannot be queried: {exc}")
    else:
        assert row is not None
        head = int(row["head"] or 0)
        usage = float(row["usage"])
        if oldest_row is not None:
            checkpoint = int(oldest_row["position"])
            oldest = SubscriptionLag(
                str(oldest_row["subscription_id"]), checkpoint, max(0, head - checkpoint)
            )

    resource = store.existing_resource(_FEED_RESOURCE)
    feed = resource if isinstance(resource, StoreFeed) else None
    connected: bool | None = None
    reconnects = 0
    published: int | None = None
    behind: int | None = None
    feed_error: FeedError | None = None
    if feed is not None:
        stats = feed.stats()
        published = stats.published_position
        reconnects = stats.reconnects
        if feed.listener is not None:
            connected = stats.listening
            if not connected:
                reasons.append(
                    "the LISTEN connection is down (reconnecting): live events from other "
                    "processes wait for the next poll"
                )
        if head is not None:
            behind = max(0, head - published)
        if stats.last_error is not None and stats.last_error_at is not None:
            feed_error = FeedError(stats.last_error, stats.last_error_at, stats.failing)
            if stats.failing:
                reasons.append(f"the live feed cannot read new events: {stats.last_error}")
    if usage is not None and usage >= max_notification_queue_usage:
        reasons.append(
            f"PostgreSQL's notification queue is {usage:.0%} full (limit "
            f"{max_notification_queue_usage:.0%}): a session that LISTENs inside a long "
            "transaction holds it; appends fail when it is full"
        )
    if max_lag is not None:
        if oldest is not None and oldest.lag > max_lag:
            reasons.append(
                f"subscription {oldest.subscription_id!r} is {oldest.lag} events behind the "
                f"head (more than {max_lag})"
            )
        if behind is not None and behind > max_lag:
            reasons.append(
                f"the live feed is {behind} events behind the head (more than {max_lag})"
            )
    replicas = await _replicas(store, timeout) if reachable else ()
    return HealthReport(
        checked_at=datetime.now(UTC),
        database_reachable=reachable,
        head=head,
        feed_running=feed is not None,
        listener_connected=connected,
        listener_reconnects=reconnects,
        published_position=published,
        feed_behind=behind,
        oldest_lag=oldest,
        notification_queue_usage=usage,
        last_feed_error=feed_error,
        max_lag=max_lag,
        max_notification_queue_usage=float(max_notification_queue_usage),
        reasons=tuple(reasons),
        replicas=replicas,
    )


async def _replicas(store: EventStore, timeout: float) -> tuple[ReplicaStats, ...]:
    """Every replica measured now; the figures of the last read when that takes too long."""
    try:
        async with asyncio.timeout(timeout):
            return tuple(await store.check_replicas())
    except (TimeoutError, EventualiError, OSError):
        return tuple(store.replica_stats())
