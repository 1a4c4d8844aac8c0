"""eventuali-pg dead-letters list|show|discard|retry against a real database.

Letters are parked in the test process by a ProjectionRunner whose handler fails on poison
events; the CLI then runs as a subprocess (``python -m eventuali_pg``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from helpers.cli_dead_letters_data import (
    CONSOLE_SCRIPT,
    HANDLED_DDL,
    HANDLED_TABLE,
    count_letters,
    get_letter,
    park_letters,
    run_cli_in,
    write_projections,
)
from helpers.cli_run import assert_one_clean_error_line, run_cli

VIEW = "orders-view"
OTHER = "audit-view"
ACTIONS = ("list", "show", "discard", "retry")


@pytest.fixture
async def handled_table(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(HANDLED_DDL)
    finally:
        await conn.close()
    return HANDLED_TABLE


async def _handled(dsn: str) -> list[tuple[int, str, bool, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT position, event_type, poison, via FROM {HANDLED_TABLE} ORDER BY position"
        )
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


async def test_help_of_each_action_has_an_example() -> None:
    results = await asyncio.gather(
        run_cli("dead-letters", "--help"),
        *(run_cli("dead-letters", action, "--help") for action in ACTIONS),
    )
    group, *actions = results
    assert group.returncode == 0
    for action in ACTIONS:
        assert f"    {action} " in group.stdout
    assert "exit codes" in group.stdout
    for action, result in zip(ACTIONS, actions, strict=True):
        assert result.returncode == 0, result.stderr
        assert "--dsn" in result.stdout and "--schema" in result.stdout
        assert f"eventuali-pg dead-letters {action}" in result.stdout.split("examples:")[1]
    top = await run_cli("--help")
    assert "  dead-letters " in top.stdout


async def test_bad_usage_is_one_line_and_exit_code_2() -> None:
    cases = [
        (("dead-letters",), ["required"]),
        (("dead-letters", "show", "v"), ["POSITION"]),
        (("dead-letters", "show", "v", "-1"), ["0 or more"]),
        (("dead-letters", "list", "--limit", "0"), ["--limit"]),
        (("dead-letters", "retry", "v", "3"), ["--projection"]),
        (("dead-letters", "retry", "v", "3", "--projection", "no_colon"), ["module:attribute"]),
        (("dead-letters", "retry", "v", "3", "--projection", "a b:C"), ["module:attribute"]),
        (("dead-letters", "discard"), ["SUBSCRIPTION POSITION"]),
        (("dead-letters", "discard", "v"), ["SUBSCRIPTION POSITION"]),
        (("dead-letters", "discard", "--all"), ["--subscription"]),
        (("dead-letters", "discard", "v", "3", "--all", "--subscription", "v"), ["either"]),
        (("dead-letters", "discard", "v", "3", "--yes"), ["--all"]),
        (("dead-letters", "discard", "--all", "--subscription", "v"), ["--yes"]),
    ]
    results = await asyncio.gather(*(run_cli(*args) for args, _ in cases))
    for (args, needles), result in zip(cases, results, strict=True):
        assert result.returncode == 2, (args, result)
        assert_one_clean_error_line(result.stderr, "error:", *needles)
        assert result.stdout == ""


async def test_list_table_and_json(dsn: str) -> None:
    empty = await run_cli("dead-letters", "list", "--dsn", dsn)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == ""
    assert "no parked events" in empty.stderr

    first, second = await park_letters(dsn, (VIEW, OTHER))

    table = await run_cli("dead-letters", "list", "--dsn", dsn)
    assert table.returncode == 0, table.stderr
    header, *rows = [line for line in table.stdout.splitlines() if line.strip()]
    for column in ("subscription", "position", "event type", "aggregate", "attempts", "error"):
        assert column in header
    rows = [row for row in rows if "──" not in row]
    assert len(rows) == 4
    # Sorted by subscription, then position.
    assert [row.split()[:2] for row in rows] == [
        [OTHER, str(first)],
        [OTHER, str(second)],
        [VIEW, str(first)],
        [VIEW, str(second)],
    ]
    assert "proj.Ticked" in rows[0] and "proj.Ticker bad-1" in rows[0]
    assert f"Poisoned: cannot digest event {first}" in rows[0]
    assert "second line" not in table.stdout  # only the error's first line

    result = await run_cli("dead-letters", "list", "--dsn", dsn, "--json", "--subscription", VIEW)
    assert result.returncode == 0, result.stderr
    letters = result.json_lines()
    assert [letter["global_position"] for letter in letters] == [first, second]
    letter = letters[0]
    assert letter["subscription_id"] == VIEW
    assert letter["event_type"] == "proj.Ticked"
    assert letter["aggregate_type"] == "proj.Ticker" and letter["aggregate_id"] == "bad-1"
    assert letter["attempts"] == 2
    assert letter["error"] == (f"Poisoned: cannot digest event {first}\nsecond line of the message")
    assert letter["traceback"].startswith("Traceback (most recent call last)")
    assert "raise Poisoned(" in letter["traceback"]
    assert letter["event"]["payload"] == {"n": 1, "poison": True}
    assert letter["event"]["global_position"] == first
    assert set(letter) >= {"event_id", "parked_at", "last_failed_at"}

    limited = await run_cli("dead-letters", "list", "--dsn", dsn, "--json", "--limit", "3")
    assert limited.returncode == 0, limited.stderr
    assert len(limited.json_lines()) == 3
    assert "there are more" in limited.stderr

    none = await run_cli("dead-letters", "list", "--dsn", dsn, "--subscription", "nobody")
    assert none.returncode == 0 and none.stdout == ""
    assert "no parked events for subscription 'nobody'" in none.stderr


async def test_show_one_letter_in_full(dsn: str) -> None:
    first, _ = await park_letters(dsn, (VIEW,))

    text = await run_cli("dead-letters", "show", VIEW, str(first), "--dsn", dsn)
    assert text.returncode == 0, text.stderr
    assert text.stderr == ""
    out = text.stdout
    assert f"subscription  {VIEW}" in out
    assert f"position      {first}" in out
    assert "proj.Ticked" in out and "proj.Ticker bad-1 v1" in out
    assert "attempts      2" in out
    assert f"error         Poisoned: cannot digest event {first}" in out
    assert "second line of the message" in out  # the whole error
    assert '"poison": true' in out
    assert "Traceback (most recent call last)" in out and "raise Poisoned(" in out

    as_json = await run_cli("dead-letters", "show", VIEW, str(first), "--dsn", dsn, "--json")
    assert as_json.returncode == 0, as_json.stderr
    record = as_json.json()
    assert record["global_position"] == first and record["subscription_id"] == VIEW
    assert record["event"]["payload"] == {"n": 1, "poison": True}
    assert "Traceback" in record["traceback"]

    missing = await run_cli("dead-letters", "show", VIEW, "1", "--dsn", dsn)
    assert missing.returncode == 3
    assert missing.stdout == ""
    assert_one_clean_error_line(missing.stderr, "error: no event at position 1", repr(VIEW))


async def test_discard_one_then_it_is_gone(dsn: str) -> None:
    first, second = await park_letters(dsn, (VIEW,))

    result = await run_cli("dead-letters", "discard", VIEW, str(first), "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert f"discarded the event at position {first}" in result.stdout
    assert await get_letter(dsn, VIEW, first) is None
    assert await get_letter(dsn, VIEW, second) is not None

    again = await run_cli("dead-letters", "discard", VIEW, str(first), "--dsn", dsn)
    assert again.returncode == 3
    assert_one_clean_error_line(again.stderr, f"no event at position {first}")

    shown = await run_cli("dead-letters", "show", VIEW, str(first), "--dsn", dsn)
    assert shown.returncode == 3


async def test_discard_all_asks_for_yes(dsn: str) -> None:
    await park_letters(dsn, (VIEW, OTHER))

    refused = await run_cli(
        "dead-letters", "discard", "--all", "--subscription", VIEW, "--dsn", dsn
    )
    assert refused.returncode == 2
    assert_one_clean_error_line(refused.stderr, "--yes", repr(VIEW))
    assert await count_letters(dsn, VIEW) == 2

    args = ("dead-letters", "discard", "--all", "--subscription", VIEW, "--yes", "--dsn", dsn)
    done = await run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"discarded 2 parked events of subscription {VIEW!r}" in done.stdout
    assert await count_letters(dsn, VIEW) == 0
    assert await count_letters(dsn, OTHER) == 2  # another subscription's letters stay

    nothing = await run_cli(*args)
    assert nothing.returncode == 3
    assert "no parked events" in nothing.stderr


async def test_retry_with_a_fixed_projection(dsn: str, handled_table: str, tmp_path: Path) -> None:
    first, second = await park_letters(dsn, (VIEW,))
    write_projections(tmp_path)

    # A TransactionalProjection subclass, imported from the current directory.
    result = await run_cli_in(
        tmp_path,
        *("dead-letters", "retry", VIEW, str(first), "--projection", "fixed_views:FixedView"),
        *("--dsn", dsn),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"handled the event at position {first}" in result.stdout
    assert await get_letter(dsn, VIEW, first) is None
    assert await _handled(dsn) == [(first, "proj.Ticked", True, "class")]

    # A factory function returning one.
    by_factory = await run_cli_in(
        tmp_path,
        *("dead-letters", "retry", VIEW, str(second), "--projection", "fixed_views:build"),
        *("--dsn", dsn),
    )
    assert by_factory.returncode == 0, by_factory.stderr
    assert await count_letters(dsn, VIEW) == 0
    assert [row[0] for row in await _handled(dsn)] == [first, second]

    # Nothing parked there any more.
    again = await run_cli_in(
        tmp_path,
        *("dead-letters", "retry", VIEW, str(first), "--projection", "fixed_views:FixedView"),
        *("--dsn", dsn),
    )
    assert again.returncode == 3
    assert_one_clean_error_line(again.stderr, f"no event at position {first}")


async def test_retry_with_an_at_least_once_projection(dsn: str, tmp_path: Path) -> None:
    first, _ = await park_letters(dsn, (VIEW,))
    write_projections(tmp_path)
    result = await run_cli_in(
        tmp_path,
        *("dead-letters", "retry", VIEW, str(first), "--projection", "fixed_views:AtLeastOnceView"),
        *("--dsn", dsn),
    )
    assert result.returncode == 0, result.stderr
    assert await get_letter(dsn, VIEW, first) is None
    assert await count_letters(dsn, VIEW) == 1


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the eventuali-pg script is not installed")
async def test_retry_through_the_console_script_imports_from_the_current_directory(
    dsn: str, handled_table: str, tmp_path: Path
) -> None:
    first, _ = await park_letters(dsn, (VIEW,))
    write_projections(tmp_path)
    result = await run_cli_in(
        tmp_path,
        *("dead-letters", "retry", VIEW, str(first), "--projection", "fixed_views:FixedView"),
        *("--dsn", dsn),
        console_script=True,
    )
    assert result.returncode == 0, result.stderr
    assert await get_letter(dsn, VIEW, first) is None


async def test_retry_that_fails_again_keeps_the_letter(
    dsn: str, handled_table: str, tmp_path: Path
) -> None:
    first, _ = await park_letters(dsn, (VIEW,))
    write_projections(tmp_path)
    args = ("dead-letters", "retry", VIEW, str(first), "--projection", "broken_views:StillBroken")

    result = await run_cli_in(tmp_path, *args, "--dsn", dsn)
    assert result.returncode == 3
    assert result.stdout == ""
    assert_one_clean_error_line(
        result.stderr, "failed again", "(attempt 3)", "RuntimeError: still broken", "stays parked"
    )
    assert "second line" not in result.stderr
    letter = await get_letter(dsn, VIEW, first)
    assert letter is not None
    assert letter.attempts == 3
    assert letter.error == "RuntimeError: still broken\nsecond line"
    assert "raise RuntimeError" in letter.traceback
    assert await _handled(dsn) == []  # the handler's write was rolled back with it

    twice = await run_cli_in(tmp_path, *args, "--dsn", dsn)
    assert twice.returncode == 3
    assert "(attempt 4)" in twice.stderr


async def test_retry_with_a_bad_projection_exits_1_with_one_line(dsn: str, tmp_path: Path) -> None:
    first, _ = await park_letters(dsn, (VIEW,))
    write_projections(tmp_path)
    cases = [
        ("no_such_module:View", ["cannot import", "no module named 'no_such_module'"]),
        ("fixed_views:Missing", ["has no attribute 'Missing'"]),
        ("fixed_views:NOT_A_PROJECTION", ["is a str", "not a Projection"]),
        ("fixed_views:NeedsArguments", ["with no arguments", "TypeError"]),
        ("fails_on_import:View", ["ValueError: this module is broken at import time"]),
        ("json:dumps", ["cannot create", "TypeError"]),
        ("json:JSONDecoder", ["not a subclass of Projection"]),
    ]
    results = await asyncio.gather(
        *(
            run_cli_in(
                tmp_path,
                *("dead-letters", "retry", VIEW, str(first), "--projection", spec),
                *("--dsn", dsn),
            )
            for spec, _ in cases
        )
    )
    for (spec, needles), result in zip(cases, results, strict=True):
        assert result.returncode == 1, (spec, result)
        assert result.stdout == ""
        assert_one_clean_error_line(result.stderr, "error:", f"--projection {spec}", *needles)
    letter = await get_letter(dsn, VIEW, first)
    assert letter is not None and letter.attempts == 2  # never handed to anything


async def test_an_unreachable_database_is_one_line_and_exit_code_1() -> None:
    unreachable = "postgresql://postgres@127.0.0.1:1/x"
    results = await asyncio.gather(
        run_cli("dead-letters", "list", "--dsn", unreachable),
        run_cli("dead-letters", "show", "v", "1", "--dsn", unreachable),
        run_cli("--dsn", unreachable, "dead-letters", "discard", "v", "1"),
    )
    for result in results:
        assert result.returncode == 1, result
        assert_one_clean_error_line(result.stderr, "error: cannot connect to PostgreSQL")
