"""``eventuali-pg server start|stop|status|url``: the embedded PostgreSQL server."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import EXIT_CHECK_FAILED, EXIT_OK
from .output import json_text, note


def _data_dir(args: argparse.Namespace) -> Path:
    from .. import embedded

    if args.data_dir:
        return Path(str(args.data_dir)).expanduser().absolute()
    return embedded.default_data_dir().expanduser().absolute()


def start(args: argparse.Namespace) -> int:
    """Start the embedded server (or find it running) and print its URL."""
    from .. import embedded

    data_dir = _data_dir(args)
    already = embedded.url(data_dir) is not None
    url = embedded.start(data_dir)
    state = embedded.status(data_dir)
    if args.json:
        print(json_text({**state, "url": url, "already_running": already}))
        return EXIT_OK
    print(url)
    verb = "already running" if already else "started"
    note(
        f"embedded PostgreSQL {verb} (pid {state['pid']}), data in {data_dir}; "
        f"use it elsewhere with: export EVENTUALI_PG_DSN='{url}'"
    )
    return EXIT_OK


def stop(args: argparse.Namespace) -> int:
    """Stop the embedded server (fast shutdown)."""
    from .. import embedded

    data_dir = _data_dir(args)
    if embedded.stop(data_dir):
        print(f"stopped the embedded PostgreSQL server (data kept in {data_dir})")
    else:
        print(f"the embedded PostgreSQL server was not running (data in {data_dir})")
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    """Print whether the embedded server runs; exit 3 when it does not."""
    from .. import embedded

    data_dir = _data_dir(args)
    state = embedded.status(data_dir)
    running = bool(state["running"])
    if args.json:
        print(json_text(state))
    elif running:
        print(f"running (pid {state['pid']}), data in {data_dir}\nurl: {state['url']}")
    else:
        print(f"not running, data in {data_dir} (start it with `eventuali-pg server start`)")
    return EXIT_OK if running else EXIT_CHECK_FAILED


def url(args: argparse.Namespace) -> int:
    """Print the embedded server's URL; exit 3 (and say so on stderr) when it is not running."""
    from .. import embedded

    data_dir = _data_dir(args)
    found = embedded.url(data_dir)
    if found is None:
        note(
            f"the embedded server is not running (data in {data_dir}); "
            "run `eventuali-pg server start`"
        )
        return EXIT_CHECK_FAILED
    print(found)
    return EXIT_OK
