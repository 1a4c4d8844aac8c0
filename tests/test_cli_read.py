"""eventuali-pg events and status against a real database."""

from __future__ import annotations

import asyncpg
from helpers.cli_data import bump, write_accounts
from helpers.cli_run import run_cli


async def test_events_json_reads_a_range(dsn: str) -> None:
    await write_accounts(dsn, ["ann", "bob"], deposits=2)  # positions 1..6
    result = await run_cli("events", "--dsn", dsn, "--json", "--from", "1", "--limit", "3")
    assert result.returncode == 0, result.stderr
    rows = result.json_lines()
    assert [row["global_position"] for row in rows] == [2, 3, 4]
    assert rows[0]["event_type"] == "AccountOpened"
    assert rows[0]["aggregate_type"] == "BankAccount"
    assert rows[0]["payload"] == {"owner": "bob", "currency": "EUR"}
    assert rows[1]["payload"] == {"amount": "10"}
    assert set(rows[0]) >= {"event_id", "aggregate_id", "aggregate_version", "recorded_at"}
    assert "more after position 4" in result.stderr


async def test_events_of_one_aggregate_and_filters(dsn: str) -> None:
    await write_accounts(dsn, ["ann", "bob"], deposits=2)
    history = await run_cli("events", "--dsn", dsn, "--json", "--aggregate-id", "acc-bob")
    assert history.returncode == 0, history.stderr
    rows = history.json_lines()
    assert [row["aggregate_version"] for row in rows] == [1, 2, 3]
    assert {row["aggregate_id"] for row in rows} == {"acc-bob"}

    deposits = await run_cli("events", "--dsn", dsn, "--json", "--event-type", "MoneyDeposited")
    assert [row["global_position"] for row in deposits.json_lines()] == [3, 4, 5, 6]

    none = await run_cli("events", "--dsn", dsn, "--json", "--aggregate-type", "Nope")
    assert none.returncode == 0 and none.stdout == ""
    assert "no matching events" in none.stderr


async def test_events_table(dsn: str) -> None:
    await write_accounts(dsn, ["ann"], deposits=1)
    result = await run_cli("events", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert "position" in result.stdout and "event type" in result.stdout
    assert "AccountOpened" in result.stdout and "MoneyDeposited" in result.stdout
    assert "acc-ann" in result.stdout


async def test_status_json_reports_head_rate_lag_and_dead_letters(dsn: str) -> None:
    await bump(dsn, "c-1", 7)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO eventuali.checkpoints (subscription_id, position) "
            "VALUES ('projector-a', 7), ('projector-b', 2)"
        )
        has_dead_letters = await conn.fetchval("SELECT to_regclass('eventuali.dead_letters')")
    finally:
        await conn.close()
    result = await run_cli("status", "--dsn", dsn, "--json")
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert report["head"] == 7
    assert report["events_last_minute"] == 7
    assert report["events_per_second"] > 0
    lags = {row["subscription_id"]: row["lag"] for row in report["subscriptions"]}
    assert lags == {"projector-a": 0, "projector-b": 5}
    if has_dead_letters:
        assert report["dead_letters"]["total"] == 0
    else:
        assert report["dead_letters"] is None
    assert report["connections"]["total"] >= 0

    text = await run_cli("status", "--dsn", dsn)
    assert text.returncode == 0, text.stderr
    assert "projector-b" in text.stdout and "head" in text.stdout
