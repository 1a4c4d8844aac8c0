"""``--listen-dsn``, ``--replica-dsn`` and ``--statement-cache-size`` for the commands that read
(``events``, ``tail``, ``status``), and the replicas' part of ``status``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Register the options that point a command at replicas and a session-mode server."""
    group = parser.add_argument_group("replicas and poolers")
    group.add_argument(
        "--replica-dsn",
        metavar="URL",
        action="append",
        default=None,
        help="a hot standby of the database (repeatable): catch-up reads go there while they "
        "are far behind the head, and `status` shows its lag",
    )
    group.add_argument(
        "--listen-dsn",
        metavar="URL",
        default=None,
        help="a direct or session-mode URL for LISTEN when --dsn is PgBouncer in transaction mode",
    )
    group.add_argument(
        "--statement-cache-size",
        metavar="N",
        type=_cache_size,
        default=None,
        help="prepared statements cached per connection (0 behind PgBouncer before 1.21)",
    )


def _cache_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


async def replica_report(
    replica_dsns: tuple[str, ...], schema: str, head: int
) -> list[dict[str, Any]]:
    """Each replica's head and lag behind ``head`` in events (or why it cannot be read)."""
    from .._db.connector import connect
    from .._dsn import describe_dsn
    from ..errors import EventualiError
    from .target import CLI_APPLICATION_NAME

    report: list[dict[str, Any]] = []
    for dsn in replica_dsns:
        entry: dict[str, Any] = {"replica": str(describe_dsn(dsn))}
        try:
            connection = await connect(
                dsn, server_settings={"application_name": CLI_APPLICATION_NAME}
            )
            try:
                value = await connection.fetchval(
                    f"SELECT position FROM {schema}.global_sequence WHERE id = 1"
                )
                recovering = await connection.fetchval("SELECT pg_is_in_recovery()")
            finally:
                await connection.close()
        except (EventualiError, OSError) as exc:
            entry.update(head=None, lag=None, standby=None, error=str(exc))
        except Exception as exc:  # a replica without the schema, or refusing the query
            entry.update(head=None, lag=None, standby=None, error=f"{type(exc).__name__}: {exc}")
        else:
            replica_head = int(value or 0)
            entry.update(
                head=replica_head,
                lag=max(0, head - replica_head),
                standby=bool(recovering),
                error=None,
            )
        report.append(entry)
    return report


def print_replicas(report: dict[str, Any], line: Callable[..., None]) -> None:
    """The replicas' lines of ``status``."""
    for replica in report.get("replicas", []):
        if replica["error"] is not None:
            line(
                "replica",
                replica["replica"],
                ": ",
                ("unreachable", "red"),
                f" ({replica['error']})",
            )
            continue
        lag = replica["lag"]
        role = "" if replica["standby"] else " (not a standby: promoted, or the primary itself)"
        line(
            "replica",
            f"{replica['replica']}: head {replica['head']}, lag ",
            (f"{lag} events", "yellow" if lag else "green"),
            role,
        )
