"""``eventuali-pg console``: the web console (``pip install 'eventuali-pg[console]'``) under
uvicorn, on 127.0.0.1:8765 unless told otherwise. Any address other than the loopback
interface needs a token (``--token`` or ``EVENTUALI_PG_CONSOLE_TOKEN``)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from . import EXIT_OK
from .output import note
from .parser import UsageError
from .target import Target, resolve

if TYPE_CHECKING:
    from ..projections.projection import AnyProjection

#: Where the token may come from instead of the command line (which `ps` shows).
TOKEN_VARIABLE = "EVENTUALI_PG_CONSOLE_TOKEN"


def run(args: argparse.Namespace) -> int:
    """Serve the console until Ctrl-C or SIGTERM."""
    from ..console import create_app, is_loopback

    token = args.token or os.environ.get(TOKEN_VARIABLE, "").strip() or None
    if token is None and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host} is reachable from other machines: give --token TOKEN (or set "
            f"{TOKEN_VARIABLE}); without one the console binds to 127.0.0.1 only"
        )
    if args.projection and not args.allow_actions:
        raise UsageError("--projection is for retrying dead letters: add --allow-actions")
    target, projections = asyncio.run(_prepare(args))
    import uvicorn

    app = create_app(
        target.dsn,
        schema=target.schema,
        allow_actions=args.allow_actions,
        token=token,
        projections=projections,
        max_lag=args.max_lag,
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on"
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    note(
        f"console on http://{host}:{args.port}/ for {target.describe()}"
        + (" (token required)" if token else "")
        + (", actions allowed" if args.allow_actions else "")
        + "; Ctrl-C stops it"
    )
    asyncio.run(uvicorn.Server(config).serve())
    return EXIT_OK


async def _prepare(args: argparse.Namespace) -> tuple[Target, dict[str, AnyProjection]]:
    from .dead_letters import ProjectionImportError, load_projection

    projections: dict[str, AnyProjection] = {}
    for spec in args.projection or []:
        subscription, _, where = spec.partition("=")
        try:
            projections[subscription] = await load_projection(where)
        except ProjectionImportError as exc:
            raise UsageError(str(exc)) from None
    return await resolve(args), projections
