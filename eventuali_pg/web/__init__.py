"""ASGI integration (FastAPI first, any Starlette application): ``pip install 'eventuali-pg[web]'``.

* :class:`StoreLifespan`: ``FastAPI(lifespan=StoreLifespan(migrate=True, projections=[...]))``
  opens the store and its projection runners at start-up and closes them at shut-down, and ends
  every event stream as soon as the server is told to stop (SIGTERM), so shut-down never hangs
  on an open stream.
* :func:`get_store` / :func:`get_lifespan`: dependencies handing them to endpoints
  (``store: EventStore = Depends(get_store)``).
* :class:`EventContextMiddleware`: every event saved in a request carries its request id
  (correlation id) and user.
* :func:`event_stream`: a server-sent-events response streaming a subscription from a position
  or the ``Last-Event-ID`` header, one JSON object per event (:func:`eventuali_pg.event_to_json`,
  the shape of ``eventuali-pg tail --json``), with heartbeats; it closes its receiver the
  moment the client hangs up.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    from ..errors import ConfigurationError

    raise ConfigurationError(
        "eventuali_pg.web needs Starlette (FastAPI includes it): pip install 'eventuali-pg[web]'"
    ) from exc

from starlette.requests import Request

from ..store.event_store import EventStore
from .lifespan import STATE_KEY, StoreLifespan
from .middleware import EventContextMiddleware
from .sse import EventStreamResponse, event_stream, format_sse, get_lifespan

__all__ = [
    "STATE_KEY",
    "EventContextMiddleware",
    "EventStreamResponse",
    "StoreLifespan",
    "event_stream",
    "format_sse",
    "get_lifespan",
    "get_store",
]


def get_store(request: Request) -> EventStore:
    """The application's open :class:`EventStore` (a dependency: ``Depends(get_store)``)."""
    return get_lifespan(request).store
