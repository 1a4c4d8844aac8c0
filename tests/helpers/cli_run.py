"""Running the CLI in the tests: in this process (``run_cli``: ``eventuali_pg.cli.main(argv)`` in
a worker thread, stdout and stderr captured) or as a ``python -m eventuali_pg`` subprocess
(``run_cli_process``, ``start_cli``, ``start_shell``) where the process boundary is the point:
signals, pipes, the embedded server, imports from the current directory, end to end."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: Environment variables the CLI reads; removed so a developer's shell cannot leak into a test.
CLI_VARIABLES = ("EVENTUALI_PG_DSN", "DATABASE_URL", "EVENTUALI_PG_DATA_DIR", "EVENTUALI_PG_SCHEMA")


def cli_env(**extra: str) -> dict[str, str]:
    """The test process's environment without the CLI's variables, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in CLI_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("COLUMNS", None)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def command(*args: str) -> list[str]:
    """The argv running the CLI with this interpreter."""
    return [sys.executable, "-m", "eventuali_pg", *args]


@dataclass
class Result:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[Any]:
        """stdout parsed as one JSON value per line."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def json(self) -> Any:
        """stdout parsed as one JSON value."""
        return json.loads(self.stdout)


#: One in-process run at a time: sys.stdout, sys.stderr and os.environ are process-wide.
_IN_PROCESS = threading.Lock()


async def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 90) -> Result:
    """Run ``eventuali_pg.cli.main(args)`` in a worker thread (it calls asyncio.run) with the
    environment ``env`` (default :func:`cli_env`), and return its exit code and output."""
    argv = list(args)
    if "demo" in argv:
        # The demo defines its own OrderPlaced, Order, ... event classes: in this process they
        # would clash with the test suite's classes of the same names (one registry per
        # process), so it runs in a process of its own, as it does for a user.
        return await run_cli_process(*args, env=env, timeout=timeout)
    environment = dict(env if env is not None else cli_env())
    return await asyncio.wait_for(asyncio.to_thread(_run_in_process, argv, environment), timeout)


def _run_in_process(argv: list[str], env: dict[str, str]) -> Result:
    from eventuali_pg.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _IN_PROCESS, _environment(env), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main(argv)
    return Result(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def run_cli_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> Result:
    """Run ``python -m eventuali_pg`` to completion and return its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_env(),
        cwd=REPO,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await stop_process(proc)
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start the CLI with stdout and stderr piped; the caller must stop it (stop_process)."""
    return await asyncio.create_subprocess_exec(
        *command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_env(),
        cwd=REPO,
    )


async def start_shell(script: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start ``bash -c script`` (for pipelines) with stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_env(),
        cwd=REPO,
    )


async def read_line(stream: asyncio.StreamReader | None, timeout: float = 30) -> str:
    """The next line of ``stream`` (fails the test after ``timeout`` seconds or at EOF)."""
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), timeout)
    assert line, "the process closed its output before printing the expected line"
    return line.decode()


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it still runs and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.communicate(), 10)


def assert_one_clean_error_line(stderr: str, *needles: str) -> None:
    """stderr is one line, without a traceback, containing every needle."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], stderr
