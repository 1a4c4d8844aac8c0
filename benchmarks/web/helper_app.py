"""The app of naive_app.py written with eventuali_pg.web: StoreLifespan, EventContextMiddleware
and event_stream. Used by benchmarks/web_streams.py."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request, Response
from naive_app import receivers_alive

from eventuali_pg.web import EventContextMiddleware, StoreLifespan, event_stream

lifespan = StoreLifespan()
app = FastAPI(lifespan=lifespan)
app.add_middleware(EventContextMiddleware)


@app.get("/events")
async def events(request: Request, from_position: int | None = None) -> Response:
    return event_stream(request, from_position=from_position)


@app.get("/health")
async def health() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "streams": len(lifespan.streamer.subscription_ids),
        "receivers_alive": receivers_alive(),
    }
