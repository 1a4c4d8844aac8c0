"""The console's ASGI application: :func:`create_app`.

A Starlette application whose lifespan is a :class:`~eventuali_pg.web.StoreLifespan` (one store
and one streamer for the live tail) plus the :class:`~.data.RateSampler`. Pages are rendered
server-side by Jinja2 with autoescaping on, so nothing stored (payloads, ids, errors) is ever
read as HTML; the little JavaScript there is (the live tail) writes text nodes only, and every
page carries a Content-Security-Policy that allows only its own inline script (by nonce).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..errors import ConfigurationError
from ..web.lifespan import StoreLifespan
from .auth import TokenMiddleware
from .data import RateSampler

if TYPE_CHECKING:
    from ..projections.projection import AnyProjection
    from ..store.event_store import EventStore

__all__ = ["Console", "create_app"]

STATE_KEY = "console"


@dataclass
class Console:
    """Settings and shared objects of one console application (``app.state.console``)."""

    lifespan: StoreLifespan
    allow_actions: bool
    token: str | None
    projections: Mapping[str, AnyProjection]
    max_lag: int | None
    sample_interval: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    sampler: RateSampler | None = None
    templates: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.PackageLoader("eventuali_pg.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    )

    @property
    def store(self) -> EventStore:
        """The console's open store."""
        return self.lifespan.store

    def render(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """``template`` rendered with ``context`` (autoescaped), with the security headers."""
        nonce = secrets.token_urlsafe(16)
        html = self.templates.get_template(template).render(
            request=request,
            path=request.url.path,
            nonce=nonce,
            csrf=self.csrf,
            allow_actions=self.allow_actions,
            logged_in=self.token is not None,
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=security_headers(nonce))


def security_headers(nonce: str) -> dict[str, str]:
    """Headers every page gets: only its own inline script runs; no framing; no referrer."""
    return {
        "content-security-policy": (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }


def get_console(request: Request) -> Console:
    """The :class:`Console` of the request's application."""
    console: Console = getattr(request.app.state, STATE_KEY)
    return console


def create_app(
    dsn: str | None = None,
    *,
    schema: str = "eventuali",
    allow_actions: bool = False,
    token: str | None = None,
    projections: Mapping[str, AnyProjection] | None = None,
    max_lag: int | None = None,
    sample_interval: float = 5.0,
    store_options: Mapping[str, Any] | None = None,
) -> Starlette:
    """The console as an ASGI application (serve it with uvicorn; ``eventuali-pg console``
    does).

    ``dsn``: the database (default ``EVENTUALI_PG_DSN``, then ``DATABASE_URL``); ``schema``:
    the store's schema. ``allow_actions``: show the retry and discard buttons of dead letters
    (each behind a confirmation). ``projections``: subscription id -> the projection that
    retries its dead letters. ``token``: require it (bearer token or login) on every request;
    give one whenever the console listens on anything but the loopback interface.
    ``max_lag``: ``/health`` is unhealthy when a subscription is further behind (a request may
    pass ``?max_lag=N``). ``sample_interval``: seconds between checkpoint samples (rates).
    """
    from .routes import routes

    if token is not None and not token.strip():
        raise ConfigurationError("the console token must not be empty")
    if not isinstance(sample_interval, (int, float)) or not sample_interval > 0:
        raise ConfigurationError(f"sample_interval must be > 0 seconds, got {sample_interval!r}")
    lifespan = StoreLifespan(
        dsn,
        schema=schema,
        store_options={"pool_min_size": 1, "pool_max_size": 6, **(store_options or {})},
    )
    console = Console(
        lifespan=lifespan,
        allow_actions=allow_actions,
        token=token,
        projections=dict(projections or {}),
        max_lag=max_lag,
        sample_interval=float(sample_interval),
    )

    @contextlib.asynccontextmanager
    async def console_lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with lifespan(app) as state:
            sampler = RateSampler(lifespan.store, interval=console.sample_interval)
            sampler.start()
            console.sampler = sampler
            try:
                yield state
            finally:
                console.sampler = None
                await sampler.close()

    middleware = [Middleware(TokenMiddleware, token=token)] if token is not None else []
    app = Starlette(routes=routes(), middleware=middleware, lifespan=console_lifespan)
    setattr(app.state, STATE_KEY, console)
    return app
