"""eventuali-pg tail: live events, filters, --limit, SIGINT and a closed pipe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys

import asyncpg
from helpers.cli_data import bump, head, write_accounts
from helpers.cli_run import read_line, run_cli, start_cli, start_shell, stop_process


async def _wait_until_following(proc: asyncio.subprocess.Process) -> str:
    note = await read_line(proc.stderr)
    assert "following" in note, note
    return note


async def test_tail_prints_events_saved_after_it_started_and_stops_on_sigint(dsn: str) -> None:
    await bump(dsn, "before", 2)
    proc = await start_cli("tail", "--dsn", dsn, "--json")
    try:
        note = await _wait_until_following(proc)
        assert "head is 2" in note
        await bump(dsn, "after", 3)
        rows = [json.loads(await read_line(proc.stdout)) for _ in range(3)]
        assert [row["global_position"] for row in rows] == [3, 4, 5]
        assert {row["aggregate_id"] for row in rows} == {"after"}
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await stop_process(proc)
    assert proc.returncode == 130
    assert out == b""
    assert b"Traceback" not in err
    assert b"interrupted" in err


async def test_tail_human_lines(dsn: str) -> None:
    proc = await start_cli("tail", "--dsn", dsn, "--limit", "1")
    try:
        await _wait_until_following(proc)
        await write_accounts(dsn, ["zoe"], deposits=0)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await stop_process(proc)
    assert proc.returncode == 0, err
    line = out.decode().strip()
    assert line.split()[0] == "1"
    assert "BankAccount acc-zoe v1" in line and "AccountOpened" in line and '"owner": "zoe"' in line


async def test_tail_from_a_position_with_filters_and_limit(dsn: str) -> None:
    await write_accounts(dsn, ["ann", "bob", "cy"], deposits=2)  # 1-3 opened, 4-9 deposits
    await bump(dsn, "c-1", 2)  # 10, 11
    by_type = await run_cli(
        "tail",
        "--dsn",
        dsn,
        "--json",
        "--from",
        "4",
        "--event-type",
        "MoneyDeposited",
        "--limit",
        "4",
    )
    assert by_type.returncode == 0, by_type.stderr
    assert [row["global_position"] for row in by_type.json_lines()] == [5, 6, 7, 8]

    by_aggregate = await run_cli(
        "tail",
        "--dsn",
        dsn,
        "--json",
        "--from",
        "0",
        "--aggregate-type",
        "BankAccount",
        "--aggregate-id",
        "acc-bob",
        "--limit",
        "3",
    )
    assert [row["global_position"] for row in by_aggregate.json_lines()] == [2, 5, 8]

    counters = await run_cli(
        "tail",
        "--dsn",
        dsn,
        "--json",
        "--from",
        "0",
        "--aggregate-type",
        "Counter",
        "--aggregate-type",
        "Nope",
        "--limit",
        "2",
    )
    assert [row["aggregate_id"] for row in counters.json_lines()] == ["c-1", "c-1"]


async def test_tail_into_a_closed_pipe_ends_cleanly(dsn: str) -> None:
    start = await head(dsn)
    tail = shlex.join(
        [sys.executable, "-m", "eventuali_pg", "tail", "--json", "--dsn", dsn, "--from", str(start)]
    )
    proc = await start_shell(f"set -o pipefail; {tail} | head -n 3")
    try:
        await bump(dsn, "piped", 3)
        rows = [json.loads(await read_line(proc.stdout)) for _ in range(3)]
        assert [row["global_position"] for row in rows] == [start + 1, start + 2, start + 3]
        # head has exited; tail notices the closed pipe at its next write.
        for _ in range(100):
            if proc.returncode is not None:
                break
            await bump(dsn, "piped", 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.3)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await stop_process(proc)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    assert b"BrokenPipe" not in err and b"Exception ignored" not in err


async def _run_into_a_closed_pipe(*args: str) -> tuple[int, str]:
    """Run the CLI with stdout on a pipe whose reading end is already closed (every write
    fails with EPIPE, like `| head -n1` once head has gone); return exit code and stderr."""
    from helpers.cli_run import REPO, cli_env, command

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command(*args), stdout=write_end, stderr=asyncio.subprocess.PIPE,
            env=cli_env(), cwd=REPO,
        )
    finally:
        os.close(write_end)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await stop_process(proc)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_every_command_into_a_closed_pipe_exits_0_quietly(dsn: str) -> None:
    await write_accounts(dsn, ["ann", "bob"], deposits=1)
    cases = [
        ("tail", "--dsn", dsn, "--from", "0"),  # rich-drawn lines
        ("status", "--dsn", dsn),  # rich-drawn
        ("events", "--dsn", dsn),  # a rich table
        ("migrate", "current", "--dsn", dsn),  # print(), flushed at exit
        ("--help",),
    ]
    results = await asyncio.gather(*(_run_into_a_closed_pipe(*args) for args in cases))
    for args, (code, err) in zip(cases, results, strict=True):
        assert code == 0, (args, code, err)
        assert "Traceback" not in err and "Exception ignored" not in err, (args, err)
        assert "BrokenPipe" not in err and "error" not in err, (args, err)


async def test_tail_across_a_lost_database_says_one_line_per_problem(
    dsn: str, pg_admin_dsn: str
) -> None:
    """The pool's background reconnection failing (the server refusing connections for a while)
    is a one-line warning, never a traceback; nothing is lost or repeated."""
    conn = await asyncpg.connect(dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    await bump(dsn, "before", 1)
    proc = await start_cli("tail", "--dsn", dsn, "--json", "--from", "0")
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await _wait_until_following(proc)
        assert json.loads(await read_line(proc.stdout))["global_position"] == 1
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            # Only the pool's connections: the pool then restores its floor in the background,
            # and that fails while the database refuses connections.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'eventuali_pg'",
                database,
            )
            warnings = ""
            while "connection floor" not in warnings:
                warnings += await read_line(proc.stderr)
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await bump(dsn, "after", 2)
        rows = [json.loads(await read_line(proc.stdout)) for _ in range(2)]
        assert [row["global_position"] for row in rows] == [2, 3]
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await admin.close()
        await stop_process(proc)
    assert proc.returncode == 130
    stderr = warnings + err.decode()
    assert "Traceback" not in stderr, stderr
    for line in stderr.splitlines():
        assert line.startswith("eventuali-pg"), stderr
