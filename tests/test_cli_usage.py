"""eventuali-pg: help, bad usage, unreachable databases, and commands needing no database."""

from __future__ import annotations

import asyncio
import signal
import sys

from helpers.cli_run import assert_one_clean_error_line, run_cli, run_cli_process

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
COMMANDS = ("migrate", "grant", "demo", "tail", "status", "events", "server")

BAD_USAGE = [
    ((), ["choose a command"]),
    (("frobnicate",), ["invalid choice", "frobnicate"]),
    (("tail", "--limit", "0"), ["--limit", "at least 1"]),
    (("tail", "--from", "-3"), ["--from", "0 or more"]),
    (("events", "--limit", "many"), ["--limit", "whole number"]),
    (("status", "--schema", "Robert'); DROP TABLE x"), ["--schema"]),
    (("demo", "--events", "0"), ["--events"]),
    (("migrate", "current", "--sql"), ["--sql"]),
    (("status", "--no-such-option"), ["unrecognized arguments"]),
    (("server",), ["required"]),
    (("tail", "--dsn", ""), ["--dsn", "empty"]),
    # Values PostgreSQL's bigint cannot hold (a DSN, so that nothing starts the embedded server).
    (("tail", "--dsn", UNREACHABLE, "--from", str(2**63)), ["--from", f"at most {2**63 - 1}"]),
    (("events", "--dsn", UNREACHABLE, "--from", str(2**64)), ["--from", "at most"]),
    (("events", "--dsn", UNREACHABLE, "--limit", str(2**63 - 1)), ["--limit", "at most"]),
    (("tail", "--dsn", UNREACHABLE, "--limit", str(2**63)), ["--limit", "at most"]),
    (("dead-letters", "show", "v", str(2**63), "--dsn", UNREACHABLE), ["POSITION", "at most"]),
    (("dead-letters", "list", "--limit", str(10**30), "--dsn", UNREACHABLE), ["at most"]),
]

NEEDS_A_DATABASE = [
    ("status",),
    ("events",),
    ("tail",),
    ("migrate",),
    ("migrate", "current"),
    ("demo", "--events", "10"),
]


async def test_help_lists_every_command_and_the_exit_codes() -> None:
    result = await run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout
    for code in ("0", "1", "2", "3", "130"):
        assert f"\n  {code} " in result.stdout
    assert "EVENTUALI_PG_DSN" in result.stdout


async def test_every_command_has_help_with_an_example() -> None:
    results = await asyncio.gather(*(run_cli(name, "--help") for name in COMMANDS))
    for name, result in zip(COMMANDS, results, strict=True):
        assert result.returncode == 0, result.stderr
        assert "examples:" in result.stdout
        assert f"eventuali-pg {name}" in result.stdout.split("examples:")[1]
        if name != "server":
            assert "--dsn" in result.stdout and "--schema" in result.stdout


async def test_bad_usage_is_one_line_and_exit_code_2() -> None:
    results = await asyncio.gather(*(run_cli(*args) for args, _ in BAD_USAGE))
    for (args, needles), result in zip(BAD_USAGE, results, strict=True):
        assert result.returncode == 2, (args, result)
        assert_one_clean_error_line(result.stderr, "error:", *needles)
        assert result.stdout == ""


async def test_an_unreachable_database_is_one_line_and_exit_code_1() -> None:
    results = await asyncio.gather(
        *(run_cli(*args, "--dsn", UNREACHABLE) for args in NEEDS_A_DATABASE),
        run_cli("--dsn", UNREACHABLE, "status"),  # the option before the command works too
    )
    for result in results:
        assert result.returncode == 1, result
        assert_one_clean_error_line(
            result.stderr, "error: cannot connect to PostgreSQL", "'127.0.0.1'", "port 1", "'x'"
        )


async def test_migrate_sql_prints_the_schema_without_a_database() -> None:
    result = await run_cli("migrate", "--sql", "--schema", "cli_offline", "--dsn", UNREACHABLE)
    assert result.returncode == 0, result.stderr
    assert 'CREATE SCHEMA IF NOT EXISTS "cli_offline"' in result.stdout
    for table in ("events", "global_sequence", "checkpoints"):
        assert f"CREATE TABLE cli_offline.{table} (" in result.stdout
    assert "Traceback" not in result.stderr


async def test_version() -> None:
    result = await run_cli_process("--version")  # end to end: python -m eventuali_pg
    assert result.returncode == 0
    assert result.stdout.startswith("eventuali-pg ")


async def test_the_largest_positions_and_limits_are_accepted(dsn: str) -> None:
    largest = str(2**63 - 1)
    result = await run_cli(
        "events", "--dsn", dsn, "--json", "--from", largest, "--limit", str(2**63 - 2)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "no matching events" in result.stderr
    listed = await run_cli("dead-letters", "list", "--dsn", dsn, "--limit", str(2**63 - 2))
    assert listed.returncode == 0, listed.stderr
    shown = await run_cli("dead-letters", "show", "v", largest, "--dsn", dsn)
    assert shown.returncode == 3, shown.stderr  # nothing parked there


# Runs what the console script runs (its target read from pyproject.toml), with an import hook
# that stops at pydantic (imported with eventuali_pg) until the test's Ctrl-C arrives there.
INTERRUPTED_WHILE_IMPORTING = """
import importlib, importlib.abc, sys, time, tomllib

class StopAtPydantic(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pydantic":
            sys.stderr.write("importing pydantic\\n")
            sys.stderr.flush()
            while True:
                time.sleep(0.01)
        return None

with open("pyproject.toml", "rb") as file:
    target = tomllib.load(file)["project"]["scripts"]["eventuali-pg"]
module, _, function = target.partition(":")
sys.meta_path.insert(0, StopAtPydantic())
sys.argv = ["eventuali-pg", "--version"]
sys.exit(getattr(importlib.import_module(module), function)())
"""


async def test_ctrl_c_while_importing_exits_130_quietly() -> None:
    from helpers.cli_run import REPO, cli_env, read_line, stop_process

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", INTERRUPTED_WHILE_IMPORTING,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(), cwd=REPO,
    )
    try:
        assert await read_line(proc.stderr) == "importing pydantic\n"
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await stop_process(proc)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err
    assert err.decode().strip() == "eventuali-pg: interrupted"
    assert out == b""
