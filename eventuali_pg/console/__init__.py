"""The web console (``pip install 'eventuali-pg[console]'``; ``eventuali-pg console``).

A Starlette application rendered on the server (Jinja2, autoescaped; no JavaScript build): a
dashboard (head, write rate, LISTEN connections, notification queue, health), a stream browser
and a live tail (server-sent events that resume after the last event shown), projections and
durable subscriptions (checkpoint, lag, progress, version, single-active holder, group
members), dead letters (retry and discard with ``allow_actions``), ``/metrics`` (Prometheus) and
``/health`` (JSON, 503 when unhealthy). :func:`create_app` builds it.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    from ..errors import ConfigurationError

    raise ConfigurationError(
        f"the eventuali-pg console needs {exc.name}: pip install 'eventuali-pg[console]'"
    ) from exc

from .app import Console, create_app
from .auth import is_loopback

__all__ = ["Console", "create_app", "is_loopback"]
