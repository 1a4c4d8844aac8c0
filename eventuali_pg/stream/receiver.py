"""EventStreamReceiver: one subscriber's bounded buffer, catch-up and live hand-over.

A receiver delivers, in global order and once each, every event matching its subscription after
its starting position. Events come from two places:

* the live feed: the streamer offers each published event; the receiver keeps those above
  ``live_since`` in a buffer of at most ``capacity`` events;
* the table: catch-up reads (``last delivered``, ``target``] in pages, where ``target`` is the
  streamer head at the moment the receiver (re)joined the live feed.

Joining live and reading the head happen in one synchronous step, so every event above the
target is offered to the buffer and every event up to it is in the table: no gap, and anything at
or below the last delivered position is skipped, so no duplicate. When the buffer is full the
receiver leaves the live feed (publishing never waits for it); once its buffer is drained it
rejoins at the new head and catches up from the table again. Without a store there is nothing
to catch up from, so it raises :class:`SubscriptionLagged` with the number of missed events.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .. import telemetry
from ..errors import ReceiverBusyError, StoreClosedError, SubscriptionClosed, SubscriptionLagged
from .backoff import Backoff
from .stream_event import StreamEvent
from .subscription import Subscription

if TYPE_CHECKING:
    from .streamer import EventStreamer

logger = logging.getLogger("eventuali_pg.stream")

MAX_CATCH_UP_PAGE = 1000
MIN_CATCH_UP_PAGE = 100


class ReceiverState(enum.Enum):
    """Where a receiver's next events come from."""

    #: From its buffer, filled by the live feed.
    LIVE = "live"
    #: From the table up to a target position (events above it are buffered live meanwhile).
    CATCHING_UP = "catching_up"
    #: Its buffer overflowed: it left the live feed, drains the buffer, then catches up.
    OVERFLOWED = "overflowed"
    #: Unsubscribed, closed, or its store closed: no more events.
    ENDED = "ended"


@dataclass(frozen=True)
class ReceiverStats:
    """A snapshot of one receiver's figures."""

    subscription_id: str
    delivered: int
    last_position: int
    lag: int
    buffer_depth: int
    capacity: int
    catch_ups: int
    catch_up_reads: int
    overflows: int
    live: bool
    events_per_second: float


_LIVE = ReceiverState.LIVE
_CATCHING_UP = ReceiverState.CATCHING_UP
_OVERFLOWED = ReceiverState.OVERFLOWED
_ENDED = ReceiverState.ENDED


class _Ended(Exception):
    pass


def _catch_up_options(source: object) -> dict[str, bool]:
    """``replica=True`` for an EventStore (its replicas may serve catch-up reads); nothing for
    other sources, whose ``load_events_from_position`` may not take it."""
    from ..store.event_store import EventStore

    return {"replica": True} if isinstance(source, EventStore) else {}


class EventStreamReceiver:
    """Consumes the events of one subscription: ``async for stream_event in receiver``.

    Also ``await receiver.recv(timeout=None)``, ``await receiver.close()`` and
    ``async with receiver``. Iteration ends when the subscription is unsubscribed, the receiver
    is closed, or its store is closed.
    """

    def __init__(
        self,
        streamer: EventStreamer,
        subscription: Subscription,
        *,
        capacity: int,
        start_after: int,
    ) -> None:
        self._streamer = streamer
        self._subscription = subscription
        self._capacity = capacity
        self._page_size = min(max(capacity, MIN_CATCH_UP_PAGE), MAX_CATCH_UP_PAGE)
        self._state = ReceiverState.LIVE
        self._consuming = False
        self._buffer: deque[StreamEvent] = deque()
        self._page: deque[StreamEvent] = deque()
        self._wakeup = asyncio.Event()
        # True while the consumer waits on _wakeup: an offer sets it only then.
        self._waiting = False
        self._last = start_after
        self._covered = start_after
        # Offers at or below this position are already covered by the table (catch-up).
        self._live_since = start_after
        # In CATCHING_UP: the position the table is read up to.
        self._catch_up_target = start_after
        self._missed = 0
        self._delivered = 0
        self._catch_ups = 0
        self._catch_up_reads = 0
        self._overflows = 0
        self._started = time.monotonic()
        self._filtered = (
            subscription.aggregate_types is not None or subscription.event_types is not None
        )
        #: The consumer name of its metrics and spans (a projection's receiver: its
        #: subscription id, without the per-session suffix of the receiver's own).
        self.telemetry_name = subscription._telemetry_name or subscription.subscription_id
        self._destination = ""
        telemetry.track_receiver(self)

    @property
    def subscription(self) -> Subscription:
        """The subscription this receiver serves."""
        return self._subscription

    @property
    def subscription_id(self) -> str:
        """The subscription's id."""
        return self._subscription.subscription_id

    @property
    def closed(self) -> bool:
        """True once the receiver has ended."""
        return self._state is ReceiverState.ENDED

    @property
    def state(self) -> ReceiverState:
        """Where the next events come from (live, catching up, overflowed) or ended."""
        return self._state

    @property
    def telemetry_destination(self) -> str:
        """The schema of the store it reads (for metrics; "" before it had one). Kept after
        the store is detached, so its figures stay in the same series."""
        source = self._streamer._source
        if source is not None:
            self._destination = str(getattr(source, "schema", ""))
        return self._destination

    @property
    def delivered_count(self) -> int:
        """Events delivered so far."""
        return self._delivered

    @property
    def lag(self) -> int:
        """Events between its streamer's head and the position it has covered."""
        return max(0, self._streamer._head - self.covered_position)

    @property
    def covered_position(self) -> int:
        """Every event of the stream up to this position has been delivered or filtered out."""
        return max(self._covered, self._last)

    # -- called by the streamer (synchronously, never blocking) --------------------------------

    def _join_live(self, head: int) -> None:
        """(Re)join the live feed at streamer head ``head``; catch up to it first if behind."""
        self._live_since = max(head, self._last)
        if head > self._last:
            self._state = ReceiverState.CATCHING_UP
            self._catch_up_target = head
            self._catch_ups += 1
            telemetry.caught_up(self.telemetry_destination, self.telemetry_name)
        else:
            self._state = ReceiverState.LIVE
            self._covered = max(self._covered, self._live_since)
        self._wakeup.set()

    def _offer(self, item: StreamEvent) -> None:
        # The hot path of every publish, once per receiver: states compared by identity with
        # module constants, the common case first.
        state = self._state
        if state is _LIVE or state is _CATCHING_UP:
            if item.global_position <= self._live_since:
                return
            if self._filtered and not self._subscription.matches(item.event):
                if state is _LIVE and not self._buffer and not self._page:
                    self._covered = item.global_position
                return
            buffer = self._buffer
            if len(buffer) < self._capacity:
                buffer.append(item)
                if self._waiting:
                    self._wakeup.set()
                return
            if state is _CATCHING_UP:
                # Buffered events follow a target not reached yet; the next catch-up reads them.
                buffer.clear()
            self._state = _OVERFLOWED
            self._missed = 1
            self._overflows += 1
            telemetry.overflowed(self.telemetry_destination, self.telemetry_name)
            self._wakeup.set()
        elif state is _OVERFLOWED and self._subscription.matches(item.event):
            self._missed += 1

    def _end(self) -> None:
        telemetry.untrack_receiver(self)
        self._state = ReceiverState.ENDED
        self._buffer.clear()
        self._page.clear()
        self._wakeup.set()

    # -- consuming ------------------------------------------------------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        buffer = self._buffer
        if buffer and self._state is _LIVE and not self._page and not self._consuming:
            # Fast path: the next event is already buffered and nothing comes before it
            # (``covered_position`` follows ``_last``).
            item = buffer.popleft()
            position = item.global_position
            if position > self._last:
                self._last = position
                self._delivered += 1
                return item
        if self._consuming:
            return await self._next()  # raises ReceiverBusyError
        page = self._page
        if page and self._state is not _ENDED:
            # Fast path of a catch-up: the page read from the table comes first.
            return self._deliver(page.popleft())
        try:
            return await self._next()
        except _Ended:
            raise StopAsyncIteration from None

    async def recv(self, timeout: float | None = None) -> StreamEvent:
        """The next event. Raises ``TimeoutError`` after ``timeout`` seconds without one,
        :class:`SubscriptionClosed` once the receiver has ended, and
        :class:`ReceiverBusyError` if another task is already waiting on this receiver."""
        try:
            if timeout is None:
                return await self._next()
            async with asyncio.timeout(timeout):
                return await self._next()
        except _Ended:
            raise SubscriptionClosed(
                f"subscription {self.subscription_id!r} has ended (unsubscribed, closed, or its "
                "store was closed); subscribe again to receive more events"
            ) from None

    async def next_batch(self, limit: int) -> list[StreamEvent]:
        """The next event and those that follow it without waiting, at most ``limit``, in
        order: what ``limit`` calls of ``anext`` would return when no call had to wait (the
        rest of a catch-up page, then the live buffer). Waits for the first one like ``anext``
        does; returns an empty list once the receiver has ended (where ``async for`` stops).
        Raises :class:`SubscriptionLagged` and :class:`ReceiverBusyError` as ``anext`` does,
        and :class:`InvalidInputError` unless ``limit`` is an integer >= 1.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            from ..errors import InvalidInputError

            raise InvalidInputError(f"limit must be an integer >= 1, got {limit!r}")
        batch: list[StreamEvent] = []
        if not self._consuming:
            self._take(batch, limit)
        if not batch:
            try:
                batch.append(await self._next())
            except _Ended:
                return batch
            # No await from here on: nothing is offered meanwhile, and a cancellation cannot
            # separate the events taken from the ones returned.
            self._take(batch, limit)
        return batch

    def _take(self, batch: list[StreamEvent], limit: int) -> None:
        """Move the events available without a read into ``batch`` (up to ``limit`` in it),
        with the bookkeeping of delivering them one by one."""
        page = self._page
        buffer = self._buffer
        delivered = 0
        last = self._last
        while len(batch) < limit:
            state = self._state
            if state is _ENDED:
                break
            if page:
                # A page holds the positions after the last delivered one, in order.
                for _ in range(min(limit - len(batch), len(page))):
                    batch.append(page.popleft())
                    delivered += 1
                last = batch[-1].global_position
                continue
            if state is _CATCHING_UP or not buffer:
                break  # the next events need a read, a rejoin, or a publish
            item = buffer.popleft()
            if item.global_position > last:
                batch.append(item)
                delivered += 1
                last = item.global_position
        if delivered:
            self._last = last
            if last > self._covered:
                self._covered = last
            self._delivered += delivered

    async def _next(self) -> StreamEvent:
        if self._consuming:
            raise ReceiverBusyError(
                f"another task is already taking events from subscription "
                f"{self.subscription_id!r}; a receiver serves one consumer at a time. Give each "
                "consumer its own subscription, or hand events on through a queue"
            )
        self._consuming = True
        try:
            while True:
                state = self._state
                if state is ReceiverState.ENDED:
                    raise _Ended
                if self._page:
                    return self._deliver(self._page.popleft())
                if state is ReceiverState.CATCHING_UP:
                    await self._read_catch_up_page(self._catch_up_target)
                    continue
                if self._buffer:
                    item = self._buffer.popleft()
                    if item.global_position > self._last:
                        return self._deliver(item)
                    continue
                if state is ReceiverState.OVERFLOWED:
                    self._rejoin()
                    continue
                self._wakeup.clear()
                self._waiting = True
                try:
                    await self._wakeup.wait()
                finally:
                    self._waiting = False
        finally:
            self._consuming = False

    def _deliver(self, item: StreamEvent) -> StreamEvent:
        self._last = item.global_position
        self._covered = max(self._covered, item.global_position)
        self._delivered += 1
        return item

    def _rejoin(self) -> None:
        missed, self._missed = self._missed, 0
        head = self._streamer._head
        if self._streamer._source is None:
            self._live_since = self._covered = max(head, self._last)
            self._state = ReceiverState.LIVE
            raise SubscriptionLagged(
                f"subscription {self.subscription_id!r} fell behind: its buffer of "
                f"{self._capacity} events was full and {missed} matching event(s) after global "
                f"position {self._last} were dropped. Consume faster, raise the streamer's "
                "capacity, or attach a store so the receiver catches up instead; iterating again "
                "continues live from the current head",
                missed=missed,
                last_position=self._last,
            )
        logger.info(
            "subscription %r overflowed at position %d; catching up from the store",
            self.subscription_id,
            self._last,
        )
        self._join_live(head)

    async def _read_catch_up_page(self, target: int) -> None:
        source = self._streamer._source
        if source is None:
            raise _Ended
        subscription = self._subscription
        backoff = Backoff(initial=0.05, maximum=2.0)
        while True:
            try:
                with telemetry.catch_up_span(
                    self.telemetry_destination, self.telemetry_name, self._last, target
                ) as span:
                    events = await source.load_events_from_position(
                        self._last,
                        self._page_size,
                        aggregate_types=subscription.aggregate_types,
                        event_types=subscription.event_types,
                        up_to=target,
                        **_catch_up_options(source),
                    )
                    telemetry.describe_read(span, len(events))
                self._catch_up_reads += 1
                break
            except StoreClosedError:
                raise _Ended from None
            except Exception as exc:  # a catch-up read must never end the iteration
                delay = backoff.next_delay()
                logger.warning(
                    "catch-up read for subscription %r failed (%s); retrying in %.2fs",
                    self.subscription_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                if self._state is ReceiverState.ENDED:
                    raise _Ended from None
        if self._state is ReceiverState.ENDED:
            raise _Ended
        self._page.extend(StreamEvent.from_stored(event) for event in events)
        if self._filtered:
            # Every matching event up to the target was asked for: a short page is all of them.
            reached = len(events) < self._page_size
        else:
            # Compared with the target, never inferred from a short page: a read that returned
            # fewer rows than exist (a lagging replica) must not skip the rest.
            reached = not events or events[-1].global_position >= target  # type: ignore[operator]
        if reached and self._state is ReceiverState.CATCHING_UP:
            self._state = ReceiverState.LIVE
            self._covered = max(self._covered, target)

    # -- lifecycle and figures --------------------------------------------------------------------

    async def close(self) -> None:
        """End this receiver and remove its subscription from the streamer. Idempotent."""
        self._streamer._remove(self.subscription_id, self)
        self._end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def stats(self) -> ReceiverStats:
        """Delivered count, last position, lag behind the head, buffer depth, catch-ups."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return ReceiverStats(
            subscription_id=self.subscription_id,
            delivered=self._delivered,
            last_position=self._last,
            lag=self.lag,
            buffer_depth=len(self._buffer) + len(self._page),
            capacity=self._capacity,
            catch_ups=self._catch_ups,
            catch_up_reads=self._catch_up_reads,
            overflows=self._overflows,
            live=self._state is ReceiverState.LIVE,
            events_per_second=self._delivered / elapsed,
        )
