"""Starting, killing and stopping projection worker processes, and reading their results."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
WORKER = TESTS / "helpers" / "projection_worker.py"


class Worker:
    """One projection process (its stdout/stderr go to a file, shown when it fails)."""

    def __init__(self, dsn: str, *args: str, log_dir: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
        self.name = args[args.index("--worker") + 1] if "--worker" in args else "w"
        self.log_path = log_dir / f"worker-{self.name}-{os.urandom(3).hex()}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), dsn, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (clean stop); returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 20.0) -> int:
        async with asyncio.timeout(timeout):
            while self.process.poll() is None:  # noqa: ASYNC110 (another process: poll it)
                await asyncio.sleep(0.02)
        self._log.close()
        return int(self.process.returncode)

    def ensure_dead(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if not self._log.closed:
            self._log.close()


async def fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def fetch(dsn: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def wait_until(check: Any, *, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll the async predicate ``check`` until it is true (TimeoutError after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 (state of the database: poll it)
            await asyncio.sleep(interval)


async def checkpoint(dsn: str, checkpoint_id: str) -> int:
    value = await fetchval(
        dsn, "SELECT position FROM eventuali.checkpoints WHERE subscription_id = $1", checkpoint_id
    )
    return int(value) if value is not None else 0


async def open_transactions(dsn: str) -> int:
    """Sessions of the library (application_name eventuali_pg) inside a transaction, idle."""
    return int(
        await fetchval(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'eventuali_pg' AND state = 'idle in transaction'",
        )
    )
