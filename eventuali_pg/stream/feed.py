"""StoreFeed: reads new rows of one store by position and publishes them to its streamers.

One feed per store (kept as the store's ``"feed"`` resource, closed with it), one reader task.
Wake-ups come from the LISTEN connection (other processes' appends), from the store's commit
listener (this process's appends), and from a periodic poll that covers lost notifications and
the poll-only mode. Any number of wake-ups coalesce into one read loop, which reads pages after
the last published position until it reaches the head: every event is published once, in
order, decoded from the stored row (so every delivery path gives what ``load_events`` gives,
and subscribers never share the writer's objects). The reader task is the only writer of the
published position.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .. import telemetry
from .._tasks import cancel_and_wait
from ..errors import EventualiError, StoreClosedError
from ..models import Event
from .backoff import Backoff
from .listener import NotificationListener
from .stream_event import StreamEvent

if TYPE_CHECKING:
    from ..store.event_store import EventStore
    from ..store.replica_reads import ReplicaStats
    from .streamer import EventStreamer

logger = logging.getLogger("eventuali_pg.feed")

ReadPage = Callable[[int, int], Awaitable[list[Event]]]


@dataclass(frozen=True)
class FeedStats:
    """A snapshot of a store's delivery figures."""

    published_position: int
    listening: bool
    reconnects: int
    notifications: int
    polls: int
    reads: int
    read_errors: int
    streamers: int
    #: The newest failed read: its message and when it happened (None if none failed).
    last_error: str | None = None
    last_error_at: datetime | None = None
    #: True while the newest read attempt failed (no successful read since ``last_error``).
    failing: bool = False
    #: Each read replica's head, lag behind the primary (in events) and health.
    replicas: tuple[ReplicaStats, ...] = field(default=())


FEED_RESOURCE = "feed"


async def feed_of(store: EventStore) -> StoreFeed:
    """The store's feed, started (LISTEN active) the first time it is asked for."""

    async def start() -> StoreFeed:
        feed = StoreFeed(store)
        await feed.start()
        return feed

    return await store.resource(FEED_RESOURCE, start)


class StoreFeed:
    """Owns the listener and the reader task of one store."""

    def __init__(self, store: EventStore) -> None:
        options = store.options
        self._store = store
        self._read_page: ReadPage = store.load_events_from_position
        self._poll_interval = options.poll_seconds
        self._page_size = options.page_size
        self._published = 0
        self._streamers: list[EventStreamer] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener = (
            NotificationListener(
                store.connector,
                store.channel,
                self.wake,
                heartbeat_interval=options.heartbeat_interval,
                heartbeat_timeout=options.heartbeat_timeout,
            )
            if options.notify
            else None
        )
        self._polls = 0
        self._reads = 0
        self._read_errors = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._failing = False
        self._queue_usage: float | None = None
        # Set by the metric reader's callback (another thread): sample at the next read.
        self.queue_usage_requested = False
        telemetry.track_feed(self)

    @property
    def published_position(self) -> int:
        """Highest position published to the streamers."""
        return self._published

    @property
    def listener(self) -> NotificationListener | None:
        """The LISTEN connection's owner (None in poll-only mode)."""
        return self._listener

    @property
    def streamers(self) -> list[EventStreamer]:
        """Streamers this feed publishes to."""
        return list(self._streamers)

    @property
    def telemetry_destination(self) -> str:
        """The store's schema (for metrics)."""
        return self._store.schema

    @property
    def notification_queue_usage(self) -> float | None:
        """The last sampled ``pg_notification_queue_usage()``; sampled at the reader's next read
        (a wake-up or a poll) after a metric reader asked for it (None before)."""
        return self._queue_usage

    @property
    def listener_pid(self) -> int | None:
        """Server process id of the LISTEN connection, None when not listening."""
        return self._listener.backend_pid if self._listener is not None else None

    async def start(self) -> None:
        """Read the head, start the reader, then the listener; returns once LISTEN is active."""
        self._published = await self._store.get_global_position()
        self._store.add_commit_listener(self.wake)
        self._task = asyncio.create_task(self._run(), name="eventuali_pg feed reader")
        if self._listener is not None:
            try:
                await self._listener.start()
            except BaseException:
                await self.close()
                raise

    def add(self, streamer: EventStreamer) -> None:
        """Publish to ``streamer`` from the current position on."""
        if streamer not in self._streamers:
            self._streamers.append(streamer)

    def remove(self, streamer: EventStreamer) -> None:
        """Stop publishing to ``streamer``."""
        if streamer in self._streamers:
            self._streamers.remove(streamer)

    def wake(self, head: int | None = None) -> None:
        """Ask the reader to read; ``head`` (if known) lets it skip wake-ups already served."""
        if head is not None and head <= self._published:
            return
        self._wake.set()

    async def _run(self) -> None:
        backoff = Backoff(initial=0.05, maximum=2.0)
        while True:
            try:
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                self._polls += 1
            self._wake.clear()
            try:
                if self.queue_usage_requested:
                    self.queue_usage_requested = False
                    self._queue_usage = await self._store.notification_queue_usage()
                await self._read_to_head()
                backoff.reset()
                self._failing = False
            except StoreClosedError:
                return
            except Exception as exc:  # the reader must outlive any failed read
                self._read_errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._last_error_at = datetime.now(UTC)
                self._failing = True
                delay = backoff.next_delay()
                logger.warning(
                    "reading new events failed (%s); retrying in %.2fs",
                    exc,
                    delay,
                    exc_info=not isinstance(exc, EventualiError),
                )
                await asyncio.sleep(delay)
                self._wake.set()

    async def _read_to_head(self) -> None:
        page_size = self._page_size
        while True:
            events = await self._read_page(self._published, page_size)
            self._reads += 1
            if not events:
                return
            items = [StreamEvent.from_stored(event) for event in events]
            self._published = items[-1].global_position
            for streamer in list(self._streamers):
                streamer._publish_many(items)
            if len(events) < page_size:
                return

    async def close(self) -> None:
        """Stop the listener and the reader; end every streamer's receivers. Idempotent."""
        self._store.remove_commit_listener(self.wake)
        telemetry.untrack_feed(self)
        try:
            if self._listener is not None:
                await self._listener.close()
            task, self._task = self._task, None
            await cancel_and_wait(task)
        finally:
            streamers, self._streamers = self._streamers, []
            for streamer in streamers:
                streamer._detach_source(self._store)

    def stats(self) -> FeedStats:
        """Reconnects, notifications, polls and reads so far."""
        listener = self._listener
        return FeedStats(
            published_position=self._published,
            listening=listener.listening if listener is not None else False,
            reconnects=listener.reconnects if listener is not None else 0,
            notifications=listener.notifications if listener is not None else 0,
            polls=self._polls,
            reads=self._reads,
            read_errors=self._read_errors,
            streamers=len(self._streamers),
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            failing=self._failing,
            replicas=tuple(self._store.replica_stats()),
        )
