"""What the console shows, read from the database: the status report of ``eventuali-pg status``
(reused as is), the write rate per bucket for the chart, and durable subscriptions grouped the
way runners write them (versions, consumer-group partitions, single-active lease holders).

The progress rate of each subscription comes from a :class:`RateSampler`, a task the console's
lifespan owns, which reads every checkpoint every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._db import database_errors
from .._tasks import cancel_and_wait
from ..cli.status import RATE_WINDOW_ROWS, collect
from ..cli.target import Target
from ..errors import EventualiError

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.console")

#: The write-rate chart: this many buckets of this many seconds, newest last.
CHART_BUCKETS = 20
CHART_BUCKET_SECONDS = 30

_PARTITION = re.compile(r"^(?P<subscription>.+)#partition-(?P<p>\d+)-of-(?P<n>\d+)$")
#: An elastic group's partition checkpoint (its members hold no advisory lease to look up).
_SHARE = re.compile(r"^(?P<subscription>.+)#share-\d+-of-\d+$")
_VERSION = re.compile(r"^(?P<base>.+)@v(?P<version>\d+)$")


async def status_report(store: EventStore) -> dict[str, Any]:
    """The report of ``eventuali-pg status --json`` for the store's database."""
    async with store.connection() as conn:
        return await collect(conn, Target(store.dsn, store.schema))


@dataclass(frozen=True)
class RateBucket:
    """Events recorded in one bucket of the chart, ``seconds_ago`` its newer edge."""

    seconds_ago: int
    events: int

    @property
    def per_second(self) -> float:
        """Events per second in the bucket."""
        return self.events / CHART_BUCKET_SECONDS


async def write_rate(store: EventStore) -> list[RateBucket]:
    """Events recorded per bucket over the last ``CHART_BUCKETS`` buckets, oldest first
    (counted among at most the newest ``RATE_WINDOW_ROWS`` events: a bounded index scan)."""
    async with store.connection() as conn:
        rows = await conn.fetch(
            "SELECT floor(extract(epoch FROM now() - recorded_at) / $2)::int AS bucket, "
            f"count(*) AS n FROM (SELECT recorded_at FROM {store.schema}.events "
            "ORDER BY global_position DESC LIMIT $1) AS newest "
            "WHERE recorded_at > now() - make_interval(secs => $2 * $3) GROUP BY 1",
            RATE_WINDOW_ROWS,
            CHART_BUCKET_SECONDS,
            CHART_BUCKETS,
        )
    counts = {int(row["bucket"]): int(row["n"]) for row in rows}
    return [
        RateBucket(bucket * CHART_BUCKET_SECONDS, counts.get(bucket, 0))
        for bucket in reversed(range(CHART_BUCKETS))
    ]


@dataclass(frozen=True)
class Holder:
    """A session holding a runner's single-active lease."""

    name: str
    pid: int
    address: str | None
    application_name: str
    since: datetime | None


@dataclass
class SubscriptionView:
    """One durable subscription (one version of it) as runners keep it in the database."""

    subscription_id: str
    base_id: str
    version: int
    checkpoint: int
    lag: int
    updated_at: datetime | None
    partitions: int | None = None
    active: bool | None = None
    replaying: bool = False
    rate: float | None = None
    holder: Holder | None = None
    members: list[tuple[int, int, Holder]] = field(default_factory=list)
    #: An elastic consumer group's members (``status``'s ``consumer_groups`` entries: member
    #: id, alive, partitions, checkpoint, lag) and its partitions with no live owner.
    elastic_members: list[dict[str, Any]] = field(default_factory=list)
    unowned: list[int] = field(default_factory=list)
    dead_letters: int = 0


def _split(checkpoint_id: str) -> tuple[str, int | None]:
    match = _PARTITION.match(checkpoint_id)
    if match is None:
        share = _SHARE.match(checkpoint_id)
        return (share["subscription"] if share else checkpoint_id), None
    return match["subscription"], int(match["n"])


def _base_and_version(subscription_id: str) -> tuple[str, int]:
    match = _VERSION.match(subscription_id)
    if match is None:
        return subscription_id, 1
    return match["base"], int(match["version"])


def lease_name(schema: str, checkpoint_id: str) -> str:
    """The advisory-lease name a single-active runner of ``checkpoint_id`` takes."""
    return f"eventuali_pg:{schema}:{checkpoint_id}"


_HOLDERS_SQL = """
SELECT n.name, a.pid, a.client_addr::text AS address, a.application_name, a.backend_start
FROM unnest($1::text[]) AS n(name)
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(n.name, 0)
JOIN pg_stat_activity a ON a.pid = l.pid
"""


async def subscriptions(
    store: EventStore, report: dict[str, Any], sampler: RateSampler | None
) -> list[SubscriptionView]:
    """Every durable subscription with a checkpoint or a recorded version, with its lag, rate,
    version, single-active holder and the consumer-group members holding their leases."""
    head = int(report["head"])
    views: dict[str, SubscriptionView] = {}
    for row in report["subscriptions"]:
        subscription_id, partitions = _split(row["subscription_id"])
        updated = datetime.fromisoformat(row["updated_at"])
        view = views.get(subscription_id)
        if view is None:
            base, version = _base_and_version(subscription_id)
            views[subscription_id] = SubscriptionView(
                subscription_id,
                base,
                version,
                row["checkpoint"],
                row["lag"],
                updated,
                partitions,
            )
            continue
        view.checkpoint = min(view.checkpoint, row["checkpoint"])
        view.lag = max(0, head - view.checkpoint)
        if view.updated_at is None or updated > view.updated_at:
            view.updated_at = updated
    for row in report["projection_versions"] or []:
        base, version = row["subscription_id"], row["version"]
        subscription_id = base if version == 1 else f"{base}@v{version}"
        view = views.get(subscription_id)
        if view is None:
            view = views[subscription_id] = SubscriptionView(
                subscription_id, base, version, row["checkpoint"], row["lag"], None
            )
        view.active = row["active"]
        view.replaying = row["replaying"]
    for group in report.get("consumer_groups") or []:
        view = views.get(group["subscription_id"])
        if view is not None:
            view.partitions = group["partitions"]
            view.elastic_members = list(group["members"])
            view.unowned = list(group["unowned"])
    dead = (report["dead_letters"] or {}).get("by_subscription", {})
    for view in views.values():
        view.dead_letters = int(dead.get(view.subscription_id, 0))
        if sampler is not None:
            view.rate = sampler.rate(view.subscription_id)
    await _find_holders(store, list(views.values()))
    return sorted(views.values(), key=lambda v: (v.base_id, v.version))


async def _find_holders(store: EventStore, views: list[SubscriptionView]) -> None:
    schema = store.schema
    wanted: dict[str, tuple[SubscriptionView, int, int] | SubscriptionView] = {}
    for view in views:
        if view.partitions is None or view.elastic_members:
            # Elastic members hold lease rows, not advisory locks: nothing to look up for them.
            wanted[lease_name(schema, view.subscription_id)] = view
            continue
        for size in range(1, view.partitions + 1):
            for member in range(size):
                name = lease_name(schema, f"{view.subscription_id}#member-{member}-of-{size}")
                wanted[name] = (view, member, size)
    if not wanted:
        return
    async with store.connection() as conn:
        rows = await conn.fetch(_HOLDERS_SQL, list(wanted))
    for row in rows:
        holder = Holder(
            row["name"],
            int(row["pid"]),
            row["address"],
            row["application_name"] or "",
            row["backend_start"],
        )
        found = wanted[row["name"]]
        if isinstance(found, SubscriptionView):
            found.holder = holder
        else:
            view, member, size = found
            view.members.append((member, size, holder))
    for view in views:
        view.members.sort(key=lambda item: (item[1], item[0]))


class RateSampler:
    """Reads every checkpoint every ``interval`` seconds (one owned task) and keeps the last
    ``keep`` seconds of samples, to tell each subscription's progress in positions per second."""

    def __init__(self, store: EventStore, *, interval: float = 5.0, keep: float = 120.0) -> None:
        self._store = store
        self._interval = interval
        self._samples: deque[tuple[float, dict[str, int]]] = deque(
            maxlen=max(2, int(keep / interval) + 1)
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling (the first sample is taken at once)."""
        self._task = asyncio.create_task(self._run(), name="eventuali_pg console sampler")

    async def close(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except (EventualiError, OSError) as exc:  # the next round tries again
                logger.warning("console: reading checkpoints failed (%s)", exc)
            await asyncio.sleep(self._interval)

    async def sample(self) -> None:
        """Take one sample now."""
        async with self._store.connection() as conn:
            with database_errors(self._store.dsn):
                rows = await conn.fetch(
                    f"SELECT subscription_id, position FROM {self._store.schema}.checkpoints"
                )
        positions: dict[str, int] = {}
        for row in rows:
            subscription_id, _partitions = _split(row["subscription_id"])
            position = int(row["position"])
            positions[subscription_id] = min(positions.get(subscription_id, position), position)
        self._samples.append((time.monotonic(), positions))

    def rate(self, subscription_id: str) -> float | None:
        """Positions per second the subscription advanced over the samples kept (its lowest
        checkpoint, for a consumer group); None until two samples have it."""
        having = [(t, s[subscription_id]) for t, s in self._samples if subscription_id in s]
        if len(having) < 2:
            return None
        (t0, p0), (t1, p1) = having[0], having[-1]
        return (p1 - p0) / (t1 - t0) if t1 > t0 else None
