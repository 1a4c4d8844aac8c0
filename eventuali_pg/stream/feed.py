"""StoreFeed: reads new rows of one store by position and publishes them to its streamers.

One feed per store, one reader task. Wake-ups come from the LISTEN connection (other
processes' appends), from the store itself (this process's appends), and from a periodic poll
that covers lost notifications and the poll-only mode. Any number of wake-ups coalesce into one
read loop, which reads pages after the last published position until it reaches the head: every
event is published once, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .._tasks import cancel_and_wait
from ..errors import EventualiError, StoreClosedError
from ..models import Event
from .backoff import Backoff
from .listener import NotificationListener
from .stream_event import StreamEvent
from .streamer import EventStreamer

logger = logging.getLogger("eventuali_pg.feed")

ReadPage = Callable[[int, int], Awaitable[list[Event]]]


@dataclass(frozen=True)
class FeedOptions:
    """Delivery settings of a store (validated by EventStore.create)."""

    notify: bool = True
    poll_interval: float = 1.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 5.0
    page_size: int = 1000
    connect_timeout: float = 10.0


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


class StoreFeed:
    """Owns the listener and the reader task of one store."""

    def __init__(
        self, *, dsn: str, channel: str, read_page: ReadPage, head: int, options: FeedOptions
    ) -> None:
        self._read_page = read_page
        self._options = options
        self._published = head
        self._streamers: list[EventStreamer] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener = (
            NotificationListener(
                dsn,
                channel,
                self.wake,
                heartbeat_interval=options.heartbeat_interval,
                heartbeat_timeout=options.heartbeat_timeout,
                connect_timeout=options.connect_timeout,
            )
            if options.notify
            else None
        )
        self._polls = 0
        self._reads = 0
        self._read_errors = 0

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

    async def start(self) -> None:
        """Start the reader, then the listener; returns once LISTEN is active."""
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

    def publish_committed(self, events: list[Event]) -> None:
        """Publish events this process has just committed, without reading them back.

        Only when they directly follow the last published position (nothing from another
        process came in between); otherwise the reader is woken to read them in order.
        """
        first = events[0].global_position
        if first != self._published + 1:
            self.wake(events[-1].global_position)
            return
        items = [StreamEvent.from_stored(event) for event in events]
        self._published = items[-1].global_position
        for streamer in self._streamers:
            streamer._publish_many(items)

    async def _run(self) -> None:
        backoff = Backoff(initial=0.05, maximum=2.0)
        while True:
            try:
                async with asyncio.timeout(self._options.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                self._polls += 1
            self._wake.clear()
            try:
                await self._read_to_head()
                backoff.reset()
            except StoreClosedError:
                return
            except Exception as exc:  # the reader must outlive any failed read
                self._read_errors += 1
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
        page_size = self._options.page_size
        while True:
            events = await self._read_page(self._published, page_size)
            self._reads += 1
            if not events:
                return
            # Events this process committed may have been published meanwhile (see
            # publish_committed); the rest of the page follows them without a gap.
            published = self._published
            items = [
                StreamEvent.from_stored(event)
                for event in events
                if event.global_position is not None and event.global_position > published
            ]
            if not items:
                if len(events) < page_size:
                    return
                continue
            self._published = items[-1].global_position
            for streamer in self._streamers:
                streamer._publish_many(items)
            if len(events) < page_size:
                return

    async def close(self) -> None:
        """Stop the listener and the reader. Idempotent."""
        if self._listener is not None:
            await self._listener.close()
        task, self._task = self._task, None
        await cancel_and_wait(task)

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
        )
