"""A plain Starlette app (no FastAPI) entering StoreLifespan inside its own lifespan; served by
uvicorn in tests/test_web_starlette.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventuali_pg import Aggregate, Event
from eventuali_pg.web import EventContextMiddleware, StoreLifespan, event_stream, get_store


class Pinged(Event, event_type="web.Pinged"):
    text: str


class Pinger(Aggregate):
    def apply_web_pinged(self, event: Pinged) -> None:
        pass


store_lifespan = StoreLifespan(migrate=True)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    async with store_lifespan(app) as state:
        yield {**state, "started_by": "the application's own lifespan"}


async def ping(request: Request) -> Response:
    pinger = Pinger()
    pinger.apply(Pinged(text=request.query_params.get("text", "")))
    return JSONResponse({"position": await get_store(request).save(pinger)})


async def events(request: Request) -> Response:
    start = request.query_params.get("from")
    return event_stream(
        request, from_position=int(start) if start is not None else None, named_events=True
    )


async def health(request: Request) -> Response:
    return JSONResponse(
        {
            "pid": os.getpid(),
            "streams": len(store_lifespan.streamer.subscription_ids),
            "started_by": request.state.started_by,
        }
    )


app = Starlette(
    routes=[
        Route("/ping", ping, methods=["POST"]),
        Route("/events", events),
        Route("/health", health),
    ],
    lifespan=lifespan,
)
app.add_middleware(EventContextMiddleware)
