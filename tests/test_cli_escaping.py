"""Stored text is data, never markup or terminal control: ids, payloads, subscription ids and
errors containing rich markup, control characters or ANSI escape sequences print as they are
(control characters as visible escapes)."""

from __future__ import annotations

import asyncpg
from helpers.cli_run import run_cli
from helpers.domain import BankAccount
from helpers.projection_domain import ProjTicker

from eventuali_pg import Event, EventStore
from eventuali_pg.projections import DeadLetterQueue, Projection, ProjectionRunner

MARKUP_ID = "doc-[red]1[/red]"
OWNER = "[x] done [/] [bold]"
ESC = "\x1b"
RED = f"{ESC}[31mred{ESC}[0m"


async def _write(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        account = BankAccount(id=MARKUP_ID)
        account.open(OWNER)
        await store.save(account)
        other = BankAccount(id=f"esc-{RED}")
        other.open(f"bell\x07{RED}")
        await store.save(other)


def _no_raw_control(text: str) -> None:
    assert ESC not in text and "\x07" not in text, repr(text)


async def test_events_table_prints_stored_text_literally(dsn: str) -> None:
    await _write(dsn)
    result = await run_cli("events", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert MARKUP_ID in result.stdout
    assert "[x] done [/] [bold]" in result.stdout
    _no_raw_control(result.stdout)
    assert "\\x1b[31mred" in result.stdout


async def test_tail_prints_stored_text_literally(dsn: str) -> None:
    await _write(dsn)
    result = await run_cli("tail", "--dsn", dsn, "--from", "0", "--limit", "2")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert f"BankAccount {MARKUP_ID} v1" in first
    assert "[x] done [/] [bold]" in first
    _no_raw_control(result.stdout)
    assert "esc-\\x1b[31mred\\x1b[0m" in second


async def test_status_prints_subscription_ids_literally(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO eventuali.checkpoints (subscription_id, position) VALUES "
            "('sub-[/]', 0), ('[b]bold[/b]', 0), ($1, 0)",
            f"ansi-{RED}",
        )
    finally:
        await conn.close()
    result = await run_cli("status", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert "sub-[/]" in result.stdout and "[b]bold[/b]" in result.stdout
    assert "dead letters" in result.stdout  # printed to the end
    _no_raw_control(result.stdout)
    assert "ansi-\\x1b[31mred" in result.stdout


class _Failing(Projection):
    async def handle_event(self, event: Event) -> None:
        raise RuntimeError(f"bad [/] {RED}\nsecond {ESC}]0;title\x07 line")


async def test_dead_letters_escape_stored_errors(dsn: str) -> None:
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        ticker = ProjTicker(id=f"t-[/]{ESC}[2J")
        ticker.tick()
        await store.save(ticker)
        runner = ProjectionRunner(
            store, _Failing(), subscription_id="esc-[/]", max_attempts=1, retry_delay=0.001
        )
        async with runner:
            await runner.wait_for_position(1, timeout=30)
        assert await DeadLetterQueue(store).count("esc-[/]") == 1

    listing = await run_cli("dead-letters", "list", "--dsn", dsn)
    assert listing.returncode == 0, listing.stderr
    assert "esc-[/]" in listing.stdout and "bad [/] \\x1b[31mred" in listing.stdout
    _no_raw_control(listing.stdout)

    shown = await run_cli("dead-letters", "show", "esc-[/]", "1", "--dsn", dsn)
    assert shown.returncode == 0, shown.stderr
    _no_raw_control(shown.stdout)
    assert "RuntimeError: bad [/] \\x1b[31mred\\x1b[0m" in shown.stdout
    assert "second \\x1b]0;title\\x07 line" in shown.stdout  # newlines of the error are kept
    assert "t-[/]\\x1b[2J" in shown.stdout


async def test_json_lines_carry_control_characters_as_escapes(dsn: str) -> None:
    owner = f"c1\x9b31m bidi\u202e del\x7f sep\u2028 {RED}"
    async with await EventStore.create(dsn) as store:
        account = BankAccount(id="json-1")
        account.open(owner)
        await store.save(account)
    result = await run_cli("events", "--dsn", dsn, "--json")
    assert result.returncode == 0, result.stderr
    for char in ("\x9b", "\u202e", "\x7f", "\u2028", ESC):
        assert char not in result.stdout, repr(char)
    assert "\\u009b31m" in result.stdout and "\\u202e" in result.stdout
    (row,) = result.json_lines()
    assert row["payload"]["owner"] == owner  # the same data, only escaped
