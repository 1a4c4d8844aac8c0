"""``eventuali-pg status``: head, write rate, subscription lag, dead letters, listeners."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..stream.listener import LISTENER_APPLICATION_NAME
from . import EXIT_CHECK_FAILED, EXIT_OK
from .output import console, json_text, plain, safe_text
from .servers import print_replicas, replica_report
from .target import CLI_APPLICATION_NAME, Target, check_schema, connect, resolve

if TYPE_CHECKING:
    from .._db import Connection
    from ..health import HealthReport

#: The rate is counted among at most this many of the newest events (a bounded index scan).
RATE_WINDOW_ROWS = 200_000
RATE_SECONDS = 60


async def run(args: argparse.Namespace) -> int:
    """Print the status of the event store (a table, or one JSON object with ``--json``).

    With ``--check``, also the health of a store opened here (LISTEN included); exit 3 when it
    is unhealthy.
    """
    if args.max_lag is not None and not args.check:
        from .parser import UsageError

        raise UsageError("--max-lag goes with --check")
    target = await resolve(args)
    connection = await connect(target)
    try:
        report = await collect(connection, target)
    finally:
        await connection.close()
    health = await check(target, max_lag=args.max_lag) if args.check else None
    if health is not None:
        report["health"] = health.to_dict()
    if target.replica_dsns:
        report["replicas"] = await replica_report(
            target.replica_dsns, target.schema, report["head"]
        )
    if args.json:
        print(json_text(report))
    else:
        _print(report)
    if health is not None and not health.healthy:
        return EXIT_CHECK_FAILED
    return EXIT_OK


async def check(target: Target, *, max_lag: int | None) -> HealthReport:
    """The health of a store opened on ``target`` with a live feed (so LISTEN is tried too)."""
    from ..stream.streamer import EventStreamer
    from .target import open_store

    async with await open_store(target, streamer=EventStreamer()) as store:
        return await store.health(max_lag=max_lag)


async def collect(connection: Connection, target: Target) -> dict[str, Any]:
    """Gather every figure of the status report as a JSON-ready dict."""
    schema = target.schema
    revision = await check_schema(connection, schema)
    head = int(
        await connection.fetchval(f"SELECT position FROM {schema}.global_sequence WHERE id = 1")
        or 0
    )
    recent = int(
        await connection.fetchval(
            f"SELECT count(*) FROM (SELECT recorded_at FROM {schema}.events "
            "ORDER BY global_position DESC LIMIT $1) AS newest "
            "WHERE recorded_at > now() - make_interval(secs => $2)",
            RATE_WINDOW_ROWS,
            RATE_SECONDS,
        )
    )
    last_recorded = await connection.fetchval(
        f"SELECT recorded_at FROM {schema}.events ORDER BY global_position DESC LIMIT 1"
    )
    checkpoints = await connection.fetch(
        f"SELECT subscription_id, position, updated_at FROM {schema}.checkpoints "
        "ORDER BY subscription_id"
    )
    return {
        "database": target.describe(),
        "schema": schema,
        "revision": revision,
        "head": head,
        "last_recorded_at": last_recorded.isoformat() if last_recorded else None,
        "events_last_minute": recent,
        "events_last_minute_capped": recent >= RATE_WINDOW_ROWS,
        "events_per_second": round(recent / RATE_SECONDS, 2),
        "subscriptions": [
            {
                "subscription_id": row["subscription_id"],
                "checkpoint": int(row["position"]),
                "lag": max(0, head - int(row["position"])),
                "updated_at": row["updated_at"].isoformat(),
            }
            for row in checkpoints
        ],
        "projection_versions": await _projection_versions(connection, schema, head),
        "consumer_groups": await _consumer_groups(connection, schema, head),
        "dead_letters": await _dead_letters(connection, schema),
        "connections": await _connections(connection),
    }


async def _projection_versions(
    connection: Connection, schema: str, head: int
) -> list[dict[str, Any]] | None:
    """Every recorded projection version, active or not, with its lag; None when the schema
    predates the table."""
    from ..projections.sql import projection_sql

    table = f"{schema}.projection_versions"
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return None
    rows = await connection.fetch(projection_sql(schema).version_list, None)
    return [
        {
            "subscription_id": row["subscription_id"],
            "version": int(row["version"]),
            "active": bool(row["active"]),
            "checkpoint": int(row["checkpoint"] or 0),
            "lag": max(0, head - int(row["checkpoint"] or 0)),
            "replaying": int(row["checkpoint"] or 0) < int(row["replay_until"]),
        }
        for row in rows
    ]


async def _consumer_groups(
    connection: Connection, schema: str, head: int
) -> list[dict[str, Any]] | None:
    """Every elastic consumer group: its members, the partitions each owns (its share), the
    lowest checkpoint among them and the lag; partitions with no live owner. None when the
    schema predates the membership tables."""
    from ..projections.sql import projection_sql

    if not await connection.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{schema}.group_partitions"
    ):
        return None
    sql = projection_sql(schema)
    groups: dict[str, dict[str, Any]] = {}
    for row in await connection.fetch(sql.group_member_status):
        group = groups.setdefault(row["subscription_id"], _new_group(row["subscription_id"]))
        group["members"][row["member_id"]] = {
            "member_id": row["member_id"],
            "alive": bool(row["alive"]),
            "heartbeat_at": row["heartbeat_at"].isoformat(),
            "partitions": [],
            "checkpoint": None,
            "lag": None,
        }
    for row in await connection.fetch(sql.group_status):
        group = groups.setdefault(row["subscription_id"], _new_group(row["subscription_id"]))
        group["partitions"] = int(row["partitions"])
        position = int(row["checkpoint"] or 0)
        member = group["members"].get(row["owner"]) if row["leased"] else None
        if member is None:
            group["unowned"].append(int(row["partition"]))
            lowest = group["unowned_checkpoint"]
            group["unowned_checkpoint"] = position if lowest is None else min(lowest, position)
            continue
        member["partitions"].append(int(row["partition"]))
        member["checkpoint"] = min(
            position if member["checkpoint"] is None else member["checkpoint"], position
        )
        member["lag"] = max(0, head - member["checkpoint"])
    return [
        {**group, "members": list(group["members"].values())}
        for _, group in sorted(groups.items())
    ]


def _new_group(subscription_id: str) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "partitions": None,
        "members": {},
        "unowned": [],
        "unowned_checkpoint": None,
    }


async def _dead_letters(connection: Connection, schema: str) -> dict[str, Any] | None:
    """Counts of parked events, or None when the schema predates the dead-letter table."""
    table = f"{schema}.dead_letters"
    if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return None
    rows = await connection.fetch(
        f"SELECT subscription_id, count(*) AS n FROM {table} "
        "GROUP BY subscription_id ORDER BY subscription_id"
    )
    by_subscription = {str(row["subscription_id"]): int(row["n"]) for row in rows}
    return {
        "table": table,
        "total": sum(by_subscription.values()),
        "by_subscription": by_subscription,
    }


async def _connections(connection: Connection) -> dict[str, Any]:
    """eventuali-pg connections to this database, other than this command's own."""
    rows = await connection.fetch(
        "SELECT application_name, count(*) AS n, max(client_addr::text) AS addr "
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND application_name LIKE 'eventuali\\_pg%' "
        "AND application_name <> $1 GROUP BY application_name",
        CLI_APPLICATION_NAME,
    )
    counts = {str(row["application_name"]): int(row["n"]) for row in rows}
    return {
        "total": sum(counts.values()),
        "listeners": counts.get(LISTENER_APPLICATION_NAME, 0),
        "by_application_name": counts,
    }


def _print(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = console()

    def line(label: str, *parts: str | tuple[str, str]) -> None:
        # Every value is data (names from the database, ids), never markup: Text, made safe.
        out.print(
            Text.assemble((f"{label:<13} ", "bold"), *(_safe_part(p) for p in parts)),
            soft_wrap=True,
        )

    rate = f"{report['events_per_second']:.2f}"
    if report["events_last_minute_capped"]:
        rate = f">= {rate}"
    line("database", report["database"])
    line("schema", f"{report['schema']} (revision {report['revision']})")
    line("head", str(report["head"]))
    line(
        "write rate",
        f"{rate} events/s over the last minute ({report['events_last_minute']} events; "
        f"last recorded {report['last_recorded_at'] or 'never'})",
    )
    print_replicas(report, line)
    connections = report["connections"]
    line(
        "connections",
        f"{connections['total']} eventuali-pg connection(s), "
        f"{connections['listeners']} identified as LISTEN connection(s)",
    )
    subscriptions = report["subscriptions"]
    if subscriptions:
        table = Table(title="durable subscriptions", box=box.SIMPLE_HEAD, title_justify="left")
        table.add_column("subscription")
        table.add_column("checkpoint", justify="right")
        table.add_column("lag", justify="right")
        table.add_column("updated (UTC)", style="dim")
        for row in subscriptions:
            lag = row["lag"]
            table.add_row(
                plain(row["subscription_id"]),
                str(row["checkpoint"]),
                Text(str(lag), style="yellow") if lag else "0",
                row["updated_at"][:19].replace("T", " "),
            )
        out.print(table)
    else:
        line("subscriptions", "no durable subscription has a checkpoint yet")
    versions = report["projection_versions"]
    if versions:
        table = Table(title="projection versions", box=box.SIMPLE_HEAD, title_justify="left")
        for column in ("projection", "version", "active", "checkpoint", "lag", "replaying"):
            table.add_column(column, justify="left" if column == "projection" else "right")
        for row in versions:
            table.add_row(
                plain(row["subscription_id"]),
                str(row["version"]),
                Text("active", style="green") if row["active"] else "",
                str(row["checkpoint"]),
                Text(str(row["lag"]), style="yellow") if row["lag"] else "0",
                "yes" if row["replaying"] else "",
            )
        out.print(table)
    for group in report["consumer_groups"] or []:
        table = Table(
            title=plain(
                f"consumer group {group['subscription_id']} ({group['partitions']} partitions)"
            ),
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        for column in ("member", "alive", "partitions"):
            table.add_column(column)
        for column in ("checkpoint", "lag"):
            table.add_column(column, justify="right")
        for member in group["members"]:
            lag = member["lag"]
            table.add_row(
                plain(member["member_id"]),
                "yes" if member["alive"] else Text("expired", style="red"),
                ",".join(str(p) for p in member["partitions"]) or "-",
                "-" if member["checkpoint"] is None else str(member["checkpoint"]),
                "-" if lag is None else (Text(str(lag), style="yellow") if lag else "0"),
            )
        if group["unowned"]:
            unowned_lag = report["head"] - (group["unowned_checkpoint"] or 0)
            table.add_row(
                Text("(no live owner)", style="red"),
                "",
                ",".join(str(p) for p in group["unowned"]),
                str(group["unowned_checkpoint"] or 0),
                Text(str(max(0, unowned_lag)), style="yellow"),
            )
        out.print(table)
    dead = report["dead_letters"]
    if dead is not None:
        detail = ", ".join(f"{key}: {n}" for key, n in dead["by_subscription"].items())
        colour = "red" if dead["total"] else "green"
        line(
            "dead letters",
            (str(dead["total"]), colour),
            f" in {dead['table']}" + (f" ({detail})" if detail else ""),
        )
    health = report.get("health")
    if health is not None:
        if health["healthy"]:
            line("health", ("healthy", "green"), _health_detail(health))
        else:
            line("health", ("UNHEALTHY", "bold red"), _health_detail(health))
            for reason in health["reasons"]:
                line("", ("- " + reason, "red"))


def _health_detail(health: dict[str, Any]) -> str:
    usage = health["notification_queue_usage"]
    oldest = health["oldest_lag"]
    parts = [
        "LISTEN " + ("connected" if health["listener_connected"] else "down"),
        f"notification queue {usage:.1%} used" if usage is not None else "",
        f"largest lag {oldest['lag']} ({oldest['subscription_id']})" if oldest else "",
    ]
    return " (" + ", ".join(p for p in parts if p) + ")"


def _safe_part(part: str | tuple[str, str]) -> str | tuple[str, str]:
    if isinstance(part, str):
        return safe_text(part)
    return (safe_text(part[0]), part[1])
