"""The console's pages: dashboard, stream browser, live tail, projections, health, metrics,
login. Dead letters are in :mod:`.letters`."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import InvalidInputError
from ..records import event_to_record
from ..store.validation import MAX_VERSION
from ..web.sse import event_stream
from . import data
from .app import get_console
from .auth import COOKIE, safe_next, session_value
from .letters import letter_routes
from .metrics import CONTENT_TYPE, exposition
from .params import MAX_LIMIT, form, int_param, text_param

if TYPE_CHECKING:
    from ..models import Event


def routes() -> list[Route]:
    """Every route of the console."""
    return [
        Route("/", dashboard),
        Route("/events", events),
        Route("/tail", tail),
        Route("/tail/stream", tail_stream),
        Route("/projections", projections),
        *letter_routes(),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def event_view(event: Event) -> dict[str, Any]:
    """An event for the templates: its record, and its payload and metadata as indented JSON."""
    record = event_to_record(event)
    metadata = {
        key: record[key]
        for key in (
            "event_id",
            "event_version",
            "timestamp",
            "causation_id",
            "correlation_id",
            "user_id",
            "metadata",
        )
        if record.get(key) not in (None, {})
    }
    return {
        **record,
        "payload_json": json.dumps(record["payload"], indent=2, ensure_ascii=False, default=str),
        "metadata_json": json.dumps(metadata, indent=2, ensure_ascii=False, default=str),
    }


# -- dashboard ---------------------------------------------------------------------------------


async def dashboard(request: Request) -> Response:
    """Head, write rate chart, LISTEN connections, notification queue, health, lag."""
    console = get_console(request)
    store = console.store
    report = await data.status_report(store)
    buckets = await data.write_rate(store)
    health = await store.health(max_lag=console.max_lag)
    views = await data.subscriptions(store, report, console.sampler)
    return console.render(
        request,
        "dashboard.html",
        report=report,
        health=health,
        chart=_chart(buckets),
        views=sorted(views, key=lambda v: -v.lag)[:5],
        refresh=int_param(request, "refresh", 10, 0, 3600),
    )


def _chart(buckets: list[data.RateBucket]) -> dict[str, Any]:
    """Bar geometry of the write-rate chart (an inline SVG, 1100 x 130)."""
    width, height, top = 1100, 110, 14
    peak = max((b.per_second for b in buckets), default=0.0)
    scale = max(peak, 1.0)
    slot = width / len(buckets)
    bars = []
    for index, bucket in enumerate(buckets):
        bar_height = round(bucket.per_second / scale * (height - top), 1)
        bars.append(
            {
                "x": round(index * slot + 1, 1),
                "y": round(height - bar_height, 1),
                "width": round(slot - 2, 1),
                "height": bar_height,
                "label": f"{bucket.per_second:.2f} events/s, {bucket.seconds_ago // 60} min "
                f"{bucket.seconds_ago % 60} s ago ({bucket.events} events)",
            }
        )
    minutes = len(buckets) * data.CHART_BUCKET_SECONDS // 60
    return {
        "bars": bars,
        "peak": peak,
        "scale": scale,
        "minutes": minutes,
        "width": width,
        "height": height,
        "top": top,
    }


# -- stream browser ----------------------------------------------------------------------------


async def events(request: Request) -> Response:
    """Events by position range, by aggregate id, by aggregate or event type."""
    console = get_console(request)
    store = console.store
    limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
    aggregate_id = text_param(request, "aggregate_id")
    aggregate_type = text_param(request, "aggregate_type")
    event_type = text_param(request, "event_type")
    head = await store.get_global_position()
    filtered = aggregate_type is not None or event_type is not None
    after: int | None = None
    from_version: int | None = None
    more = False
    if aggregate_id is not None:
        from_version = int_param(request, "from_version", 0, 0, MAX_VERSION)
        found = await _refused_as_400(store.load_events(aggregate_id, from_version))
        if aggregate_type is not None:
            found = [e for e in found if e.aggregate_type == aggregate_type]
        if event_type is not None:
            found = [e for e in found if e.event_type == event_type]
        listed, more = found[:limit], len(found) > limit
    else:
        after = int_param(request, "after", 0 if filtered else max(0, head - limit))
        found = await _refused_as_400(
            store.load_events_from_position(
                after, limit + 1, aggregate_types=aggregate_type, event_types=event_type
            )
        )
        listed, more = found[:limit], len(found) > limit
    return console.render(
        request,
        "events.html",
        head=head,
        events=[event_view(e) for e in listed],
        more=more,
        after=after,
        from_version=from_version,
        limit=limit,
        aggregate_id=aggregate_id,
        aggregate_type=aggregate_type,
        event_type=event_type,
        previous_after=max(0, (after or 0) - limit) if after and not filtered else None,
    )


async def _refused_as_400(read: Awaitable[list[Event]]) -> list[Event]:
    """The events ``read`` returns; a 400 naming the problem when the store refuses the
    request's values (a NUL character, an id over the length limit)."""
    try:
        return await read
    except InvalidInputError as exc:
        raise HTTPException(400, str(exc)) from None


# -- live tail ---------------------------------------------------------------------------------


async def tail(request: Request) -> Response:
    """The live tail page: new events as they are saved (server-sent events)."""
    console = get_console(request)
    head = await console.store.get_global_position()
    after = int_param(request, "after", head, 0, head)
    return console.render(
        request,
        "tail.html",
        after=after,
        aggregate_type=text_param(request, "aggregate_type"),
        event_type=text_param(request, "event_type"),
    )


async def tail_stream(request: Request) -> Response:
    """The server-sent events behind the live tail: after ``?after=N`` or the
    ``Last-Event-ID`` a reconnecting browser sends, so nothing is missed or repeated."""
    after = int_param(request, "after", 0)
    return event_stream(
        request,
        from_position=after,
        aggregate_types=text_param(request, "aggregate_type"),
        event_types=text_param(request, "event_type"),
        retry_ms=1000,
    )


# -- projections -------------------------------------------------------------------------------


async def projections(request: Request) -> Response:
    """Durable subscriptions: checkpoint, lag, rate, version, holder, group members."""
    console = get_console(request)
    report = await data.status_report(console.store)
    views = await data.subscriptions(console.store, report, console.sampler)
    return console.render(
        request,
        "projections.html",
        report=report,
        views=views,
        sample_interval=console.sample_interval,
    )


# -- health and metrics ------------------------------------------------------------------------


async def health(request: Request) -> Response:
    """The store's health report as JSON: 200 when healthy, 503 when not."""
    console = get_console(request)
    max_lag = int_param(request, "max_lag", -1)
    report = await console.store.health(max_lag=console.max_lag if max_lag < 0 else max_lag)
    return JSONResponse(
        report.to_dict(),
        status_code=200 if report.healthy else 503,
        headers={"cache-control": "no-store"},
    )


async def metrics(request: Request) -> Response:
    """Prometheus text format, computed at each scrape."""
    console = get_console(request)
    store = console.store
    report = await data.status_report(store)
    views = await data.subscriptions(store, report, console.sampler)
    health_report = await store.health(max_lag=console.max_lag)
    return Response(exposition(report, views, health_report), media_type=CONTENT_TYPE)


# -- login -------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    """The login form (only with a token): a correct token sets the session cookie."""
    console = get_console(request)
    target = safe_next(request.query_params.get("next"))
    if console.token is None:
        return RedirectResponse(target, status_code=303)
    failed = False
    if request.method == "POST":
        fields = await form(request)
        target = safe_next(fields.get("next"))
        if hmac.compare_digest(fields.get("token", "").encode(), console.token.encode()):
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE, session_value(console.token), httponly=True, samesite="strict"
            )
            return response
        failed = True
    return console.render(
        request, "login.html", status_code=401 if failed else 200, next=target, failed=failed
    )


async def logout(request: Request) -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
