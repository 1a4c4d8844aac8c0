"""eventuali-pg demo: a small run completes and reports that every subscriber got its events."""

from __future__ import annotations

import asyncpg
from helpers.cli_run import run_cli

SUBSCRIBERS = {"everything", "orders", "shipping", "late-joiner", "slow"}


async def test_demo_json_summary_is_correct(dsn: str) -> None:
    result = await run_cli("demo", "--dsn", dsn, "--events", "150", "--rate", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = result.json()
    assert report["ok"] is True
    assert report["events_written"] == 150
    assert report["positions"] == [1, 150]
    rows = {row["name"]: row for row in report["subscribers"]}
    assert set(rows) == SUBSCRIBERS
    for row in rows.values():
        assert row["ok"] and row["problem"] is None
        assert row["received"] == row["expected"]
    assert rows["everything"]["expected"] == rows["slow"]["expected"] == 150

    conn = await asyncpg.connect(dsn)
    try:
        orders = await conn.fetchval(
            "SELECT count(*) FROM eventuali.events WHERE aggregate_type = 'Order'"
        )
        shipped = await conn.fetchval(
            "SELECT count(*) FROM eventuali.events WHERE event_type = 'OrderShipped'"
        )
        customers = await conn.fetchval(
            "SELECT count(*) FROM eventuali.events WHERE aggregate_type = 'Customer'"
        )
    finally:
        await conn.close()
    assert rows["orders"]["expected"] == orders
    assert rows["shipping"]["expected"] == shipped
    assert rows["late-joiner"]["expected"] == customers
    assert rows["late-joiner"]["catch_ups"] >= 1
    assert report["live_latency_ms"]["samples"] > 0
    assert "save()" in report["latency_measured_from"]


async def test_demo_human_summary(dsn: str) -> None:
    result = await run_cli("demo", "--dsn", dsn, "--events", "60", "--writers", "2", "--rate", "0")
    assert result.returncode == 0, result.stderr
    assert "events written  60 by 2 writers" in result.stdout
    assert "p50" in result.stdout and "p99" in result.stdout
    assert "OK: every subscriber received exactly the events it should" in result.stdout
    for name in SUBSCRIBERS:
        assert name in result.stdout
