"""A real uvicorn server process running an ASGI app from examples/ (for tests/test_web_*.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .cli_run import cli_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``uvicorn`` process; ``output`` collects its stdout and stderr."""

    process: asyncio.subprocess.Process
    url: str
    output: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.output)

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until GET /health answers (fails if the process exits first)."""
        async with asyncio.timeout(timeout), httpx.AsyncClient() as client:
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"the server exited early:\n{self.text}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        """The exit status; ``TimeoutError`` after ``timeout`` seconds (a hang)."""
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            if self._reader is not None:
                await self._reader
        return code


async def _collect(stream: asyncio.StreamReader, output: list[str]) -> None:
    while line := await stream.readline():
        output.append(line.decode(errors="replace"))


@contextlib.asynccontextmanager
async def uvicorn_server(
    app: str,
    dsn: str,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    cwd: Path = EXAMPLES,
) -> AsyncIterator[Server]:
    """``uvicorn app`` on a free port with ``EVENTUALI_PG_DSN=dsn``, in ``cwd`` (examples/);
    stopped at the end (SIGTERM, then SIGKILL of its process group) if still running."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        cwd=cwd,
        env=cli_env(EVENTUALI_PG_DSN=dsn, **(env or {})),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers are stopped with it
    )
    assert process.stdout is not None
    server = Server(process, f"http://127.0.0.1:{port}")
    server._reader = asyncio.create_task(_collect(process.stdout, server.output))
    try:
        await server.wait_ready()
        yield server
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group
        await process.wait()
        async with asyncio.timeout(20):
            await server._reader
