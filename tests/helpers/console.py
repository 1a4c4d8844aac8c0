"""The console under test: ``eventuali-pg console`` as a real process on a free port (run in
tests/, so ``--projection helpers.console:Forgiving`` imports), a TCP proxy that can cut every
connection through it, the projection that retries dead letters, and data to show."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx

from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg.projections import Projection
from helpers.cli_run import cli_env, command
from helpers.web_server import Server, free_port

TESTS = Path(__file__).resolve().parents[1]

#: A payload a careless page would run as a script.
SCRIPT = "<script>window.__pwned = 1</script><b>bold?</b>"


class Forgiving(Projection):
    """Handles anything (the retry of a dead letter succeeds)."""

    async def handle_event(self, event: Event) -> None:
        return None


class Noted(Event, event_type="console.Noted"):
    text: str


class Notebook(Aggregate):
    """An aggregate whose events carry free text (``<script>`` included)."""

    def note(self, text: str) -> None:
        self.apply(Noted(text=text))

    def apply_console_noted(self, event: Noted) -> None:
        pass


async def write_notes(store: EventStore, notebook_id: str, texts: list[str]) -> list[int]:
    """Save one Noted event per text on ``notebook_id`` (one save each); their positions."""
    notebook = await store.load(Notebook, notebook_id) or Notebook(id=notebook_id)
    positions = []
    for text in texts:
        notebook.note(text)
        position = await store.save(notebook)
        assert position is not None
        positions.append(position)
    return positions


async def listener_pids(dsn: str) -> list[int]:
    """Server pids of the LISTEN connections to ``dsn``'s database."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'eventuali_pg_listener'"
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


async def _collect(stream: asyncio.StreamReader, output: list[str]) -> None:
    while line := await stream.readline():
        output.append(line.decode(errors="replace"))


@contextlib.asynccontextmanager
async def console_server(dsn: str, *args: str, token: str | None = None) -> AsyncIterator[Server]:
    """``eventuali-pg console --dsn dsn --port <free> *args`` until the block ends (SIGTERM,
    then SIGKILL of its process group)."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *command("console", "--dsn", dsn, "--port", str(port), *args),
        cwd=TESTS,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    server = Server(process, f"http://127.0.0.1:{port}")
    server._reader = asyncio.create_task(_collect(process.stdout, server.output))
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        async with asyncio.timeout(60), httpx.AsyncClient(headers=headers) as client:
            while True:
                if process.returncode is not None:
                    raise AssertionError(f"the console exited early:\n{server.text}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{server.url}/health")).status_code in (200, 503):
                        break
                await asyncio.sleep(0.1)
        yield server
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        async with asyncio.timeout(20):
            await server._reader


class CuttingProxy:
    """A TCP proxy to ``127.0.0.1:upstream`` whose :meth:`cut` aborts every connection through
    it at once (as a dropped network would), so a browser has to reconnect."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0
        self.cuts = 0

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._abort_all()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Abort every open connection (both sides)."""
        self.cuts += 1
        self._abort_all()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._upstream
            )
            self._writers.add(upstream_writer)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except OSError:
            pass
        finally:
            for end in (writer, upstream_writer):
                if end is not None:
                    self._writers.discard(end)
                    end.transport.abort()
            self._handlers.discard(task)


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()
    except OSError:
        pass
    finally:
        target.transport.abort()
