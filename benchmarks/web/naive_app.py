"""What a newcomer wrote before eventuali_pg.web (issue 19), kept to measure against: a
hand-made lifespan, a request-id middleware (``@app.middleware("http")``) and an SSE endpoint
whose generator closes its receiver in ``async with``. Used by benchmarks/web_streams.py."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from eventuali_pg import (
    EventStore,
    EventStreamer,
    EventStreamReceiver,
    Subscription,
    event_context,
    event_to_json,
)

streamer = EventStreamer()
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    store = await EventStore.create(os.environ["EVENTUALI_PG_DSN"], streamer=streamer)
    state["store"] = store
    try:
        yield
    finally:
        await store.close()


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def request_ids(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    with event_context(correlation_id=request.headers.get("x-request-id") or uuid.uuid4().hex):
        return await call_next(request)


@app.get("/events")
async def events(from_position: int | None = None) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        receiver = await streamer.subscribe(Subscription(from_position=from_position))
        async with receiver:
            yield ": open\n\n"
            async for item in receiver:
                yield f"id: {item.global_position}\ndata: {event_to_json(item.event)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.get("/health")
async def health() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "streams": len(streamer.subscription_ids),
        "receivers_alive": receivers_alive(),
    }


def receivers_alive() -> int:
    """Receiver objects still in memory (subscribed or not), without collecting garbage."""
    return sum(isinstance(o, EventStreamReceiver) for o in gc.get_objects())
