"""Web streams: receivers left alive after SSE clients hang up, and shutdown time (SIGTERM)
with a stream open, for the hand-written app of issue 19 and for eventuali_pg.web.

    python benchmarks/web_streams.py [--dsn URL] [--clients 5]

Creates its own database on the server (``--dsn``, default ``EVENTUALI_PG_DSN``), migrates it
and, for each app, starts ``uvicorn`` (one worker): opens ``--clients`` event streams, hangs
them up, waits 1.5 s and asks the app how many subscriptions are still active; then opens one
stream, sends SIGTERM and times the exit (killed after 20 s: a hang).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.web_server import uvicorn_server  # noqa: E402

import eventuali_pg  # noqa: E402

APPS = {
    "hand-written (StreamingResponse + async with receiver)": (
        "naive_app:app",
        ROOT / "benchmarks" / "web",
    ),
    "eventuali_pg.web (event_stream + StoreLifespan)": (
        "helper_app:app",
        ROOT / "benchmarks" / "web",
    ),
}
SHUTDOWN_CAP = 20.0


class Tick(eventuali_pg.Event):
    n: int
    padding: str = ""


class Ticker(eventuali_pg.Aggregate):
    def apply_tick(self, event: Tick) -> None:
        pass


async def write_events(dsn: str, stop: asyncio.Event, padding: int) -> None:
    """One event every 5 ms until ``stop``: the streams have something to send."""
    async with await eventuali_pg.EventStore.create(dsn) as store:
        n = 0
        while not stop.is_set():
            ticker = Ticker()
            ticker.apply(Tick(n=n, padding="x" * padding))
            await store.save(ticker)
            n += 1
            await asyncio.sleep(0.005)


async def streams_left(
    url: str, dsn: str, clients: int, padding: int, hold: float
) -> tuple[int, int, int]:
    stop = asyncio.Event()
    writer = asyncio.create_task(write_events(dsn, stop, padding))
    try:
        return await _streams_left(url, clients, hold)
    finally:
        stop.set()
        await writer


async def _streams_left(url: str, clients: int, hold: float) -> tuple[int, int, int]:
    async with httpx.AsyncClient(timeout=30) as client:
        opened = []
        for _ in range(clients):
            context = client.stream("GET", f"{url}/events")
            response = await context.__aenter__()
            chunks = response.aiter_raw()
            await anext(chunks)
            opened.append((context, chunks))
        await asyncio.sleep(hold)  # events flowing, clients not reading, then they leave
        before = (await client.get(f"{url}/health")).json()["streams"]
        for context, _chunks in opened:
            await context.__aexit__(None, None, None)
    await asyncio.sleep(1.5)
    async with httpx.AsyncClient(timeout=30) as probe:
        health = (await probe.get(f"{url}/health")).json()
    return before, health["streams"], health["receivers_alive"]


async def shutdown_seconds(server: Any) -> float | None:
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("GET", f"{server.url}/events") as response,
    ):
        chunks = response.aiter_raw()
        await anext(chunks)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        try:
            await server.wait_exit(SHUTDOWN_CAP)
        except TimeoutError:
            return None
        return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("EVENTUALI_PG_DSN"))
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument(
        "--padding", type=int, default=0, help="bytes of padding per event (fills send buffers)"
    )
    parser.add_argument("--hold", type=float, default=0.5, help="seconds before hanging up")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set EVENTUALI_PG_DSN")
    name = f"eventuali_bench_web_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(args.dsn)
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        await eventuali_pg.migrate(dsn)
        print(f"`{shlex.join(['python', 'benchmarks/web_streams.py', *sys.argv[1:]])}`\n")
        print(
            "| app | streams open | 1.5 s after the clients left: still subscribed "
            "| receiver objects alive | SIGTERM with a stream open: exit after |"
        )
        print("|---|---:|---:|---:|---:|")
        for label, (app, folder) in APPS.items():
            env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)])}
            async with uvicorn_server(app, dsn, env=env, cwd=folder) as server:
                before, after, alive = await streams_left(
                    server.url, dsn, args.clients, args.padding, args.hold
                )
                seconds = await shutdown_seconds(server)
            shown = (
                f"{seconds:.2f} s"
                if seconds is not None
                else f"hung (killed after {SHUTDOWN_CAP:g} s)"
            )
            print(f"| {label} | {before} | {after} | {alive} | {shown} |")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
