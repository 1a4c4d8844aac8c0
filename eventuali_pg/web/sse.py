"""Server-sent events: a live subscription streamed to an HTTP client.

Each event is one SSE message::

    id: <global_position>
    data: <event_to_json(event): the line of `eventuali-pg tail --json`>

(plus ``event: <event_type>`` with ``named_events=True``). A comment line (``: heartbeat``)
goes out every ``heartbeat`` seconds without events, so proxies keep the connection open and a
dead client is noticed. The stream starts after the ``Last-Event-ID`` request header when the
client sends one (a browser's ``EventSource`` does on reconnect), else after ``from_position``,
else at the current head (new events only).

The response owns its receiver: it subscribes when the response starts and closes the
receiver the moment the client hangs up (it listens for the ASGI ``http.disconnect``), when
the server shuts down (:meth:`StoreLifespan.begin_shutdown`, SIGTERM), or when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._tasks import cancel_and_wait
from ..errors import (
    ConfigurationError,
    InvalidInputError,
    StoreClosedError,
    StreamerClosedError,
    SubscriptionClosed,
)
from ..records import event_to_json
from ..store.validation import check_position
from ..stream.stream_event import StreamEvent
from ..stream.streamer import EventStreamer
from ..stream.subscription import Subscription

if TYPE_CHECKING:
    from .lifespan import StoreLifespan

logger = logging.getLogger("eventuali_pg.web")

__all__ = ["EventStreamResponse", "event_stream", "format_sse", "get_lifespan"]

DEFAULT_HEARTBEAT = 15.0


def format_sse(item: StreamEvent, *, named: bool = False) -> bytes:
    """One SSE message for ``item``: ``id`` (global position), optional ``event`` (event type)
    and ``data`` (:func:`eventuali_pg.event_to_json`, always one line)."""
    event = item.event
    name = f"event: {event.event_type}\n" if named else ""
    return f"id: {item.global_position}\n{name}data: {event_to_json(event)}\n\n".encode()


class EventStreamResponse(Response):
    """A ``text/event-stream`` response following ``streamer`` (see the module docstring).

    Usually made by :func:`event_stream`. ``aggregate_types`` / ``event_types`` filter as for
    :class:`Subscription`. ``from_position``: start after this global position when the
    request has no ``Last-Event-ID`` (None: new events only). ``heartbeat``: seconds between
    keep-alive comments. ``retry_ms``: the reconnect delay sent to the client (``retry:``
    field; None sends none). ``shutdown``: an event that ends the stream when set (the
    lifespan's). A bad ``Last-Event-ID`` or a position beyond the store's head is answered
    with 400 and a JSON body; a stream requested during shutdown with 503.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        streamer: EventStreamer,
        *,
        aggregate_types: str | Collection[str] | None = None,
        event_types: str | Collection[str] | None = None,
        from_position: int | None = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        retry_ms: int | None = 2000,
        named_events: bool = False,
        shutdown: asyncio.Event | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if from_position is not None:
            check_position(from_position, what="from_position")
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or heartbeat <= 0:
            raise InvalidInputError(f"heartbeat must be a number of seconds > 0, got {heartbeat!r}")
        self._streamer = streamer
        self._subscription = Subscription(
            id=f"sse-{uuid.uuid4().hex[:12]}",
            aggregate_type_filter=aggregate_types,
            event_type_filter=event_types,
        )
        # Every stream reports under one consumer name (its id is per connection).
        self._subscription._telemetry_name = "sse"
        self._from_position = from_position
        self._heartbeat = float(heartbeat)
        self._retry_ms = retry_ms
        self._named = named_events
        self._shutdown = shutdown
        super().__init__(content=None, status_code=200, headers=headers)
        if "content-length" in self.headers:  # Response's default for an empty body
            del self.headers["content-length"]
        self.headers["cache-control"] = "no-cache"
        self.headers["x-accel-buffering"] = "no"  # nginx: do not buffer the stream

    @property
    def subscription_id(self) -> str:
        """The id of this stream's subscription (``sse-...``)."""
        return self._subscription.subscription_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._shutdown is not None and self._shutdown.is_set():
            await _refuse(send, 503, "ServerShuttingDown", "the server is shutting down; retry")
            return
        try:
            start = _last_event_id(scope, self._from_position)
            receiver = await self._streamer.subscribe(self._subscription, from_position=start)
        except (StreamerClosedError, StoreClosedError):
            await _refuse(send, 503, "ServerShuttingDown", "the server is shutting down; retry")
            return
        except InvalidInputError as exc:
            await _refuse(send, 400, type(exc).__name__, str(exc))
            return
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            )
            opening = f"retry: {self._retry_ms}\n" if self._retry_ms is not None else ""
            opening += f": stream after position {start if start is not None else 'head'}\n\n"
            await send({"type": "http.response.body", "body": opening.encode(), "more_body": True})
            watcher = asyncio.create_task(
                self._end_when_gone(receive, receiver), name=f"eventuali_pg {self.subscription_id}"
            )
            try:
                await self._stream(send, receiver)
            finally:
                await cancel_and_wait(watcher)
            with contextlib.suppress(OSError):  # the client is gone; nothing to finish
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await receiver.close()

    async def _stream(self, send: Send, receiver: Any) -> None:
        heartbeat = self._heartbeat
        while True:
            try:
                item = await receiver.recv(timeout=heartbeat)
            except TimeoutError:
                chunk = b": heartbeat\n\n"
            except SubscriptionClosed:
                return
            else:
                chunk = format_sse(item, named=self._named)
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:  # servers that report a gone client on send (ASGI spec 2.4)
                return

    async def _end_when_gone(self, receive: Receive, receiver: Any) -> None:
        """Close the receiver as soon as the client disconnects or the server shuts down."""
        shutdown = self._shutdown
        waiter = (
            asyncio.create_task(shutdown.wait(), name=f"eventuali_pg {self.subscription_id} stop")
            if shutdown is not None
            else None
        )
        try:
            while True:
                message_task = asyncio.ensure_future(receive())
                waits: set[asyncio.Future[Any]] = {message_task}
                if waiter is not None:
                    waits.add(waiter)
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not message_task.done():
                        await cancel_and_wait(message_task)
                if waiter is not None and waiter.done():
                    break
                if message_task.result().get("type") == "http.disconnect":
                    break
        finally:
            await cancel_and_wait(waiter)
            await receiver.close()


def _last_event_id(scope: Scope, default: int | None) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"last-event-id":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                raise InvalidInputError(
                    f"Last-Event-ID must be a global position (an integer >= 0), got {text!r}"
                )
            return int(text)
    return default


async def _refuse(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def event_stream(
    request: Request,
    *,
    aggregate_types: str | Collection[str] | None = None,
    event_types: str | Collection[str] | None = None,
    from_position: int | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    retry_ms: int | None = 2000,
    named_events: bool = False,
) -> EventStreamResponse:
    """An :class:`EventStreamResponse` on the application's :class:`StoreLifespan` streamer,
    ending when the server shuts down: ``return event_stream(request, from_position=after)``.

    The stream resumes after the request's ``Last-Event-ID`` header when present, else after
    ``from_position``, else starts at the head. Filters as for :class:`Subscription`.
    """
    lifespan = get_lifespan(request)
    return EventStreamResponse(
        lifespan.streamer,
        aggregate_types=aggregate_types,
        event_types=event_types,
        from_position=from_position,
        heartbeat=heartbeat,
        retry_ms=retry_ms,
        named_events=named_events,
        shutdown=lifespan._shutting_down,
    )


def get_lifespan(request: Request) -> StoreLifespan:
    """The application's :class:`StoreLifespan` (a dependency: ``Depends(get_lifespan)``)."""
    from .lifespan import STATE_KEY, StoreLifespan

    found = getattr(request.state, STATE_KEY, None)
    if found is None:
        found = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(found, StoreLifespan):
        raise ConfigurationError(
            "no StoreLifespan on this application: create it with "
            "FastAPI(lifespan=StoreLifespan(...)) (or Starlette(lifespan=...)), or enter it in "
            "your own lifespan with `async with lifespan(app) as state: yield state`"
        )
    return found
