"""eventuali_pg.web without FastAPI: a Starlette app whose own lifespan enters StoreLifespan,
under a real uvicorn process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from helpers.web_server import uvicorn_server

from eventuali_pg import EventStore

TESTS = Path(__file__).resolve().parent
HANG = 30  # seconds: a hang detector only


async def test_a_starlette_app_with_its_own_lifespan(dsn: str) -> None:
    async with (
        uvicorn_server("helpers.web_starlette_app:app", dsn, cwd=TESTS) as server,
        httpx.AsyncClient(timeout=HANG) as client,
    ):
        health = (await client.get(f"{server.url}/health")).json()
        assert health["started_by"] == "the application's own lifespan"
        saved = await client.post(
            f"{server.url}/ping", params={"text": "hi"}, headers={"x-request-id": "r-1"}
        )
        assert saved.json() == {"position": 1}
        assert saved.headers["x-request-id"] == "r-1"
        async with client.stream("GET", f"{server.url}/events?from=0") as response:
            lines: list[str] = []
            stream = response.aiter_lines()
            async with asyncio.timeout(HANG):
                async for line in stream:
                    lines.append(line)
                    if line.startswith("data: "):
                        break
            assert "id: 1" in lines and "event: web.Pinged" in lines
            server.signal(signal.SIGTERM)
            async with asyncio.timeout(HANG):
                _rest = [line async for line in stream]  # the stream ends cleanly
        await server.wait_exit(HANG)
    assert "Application shutdown complete" in server.text, server.text
    assert "Traceback" not in server.text, server.text
    async with await EventStore.create(dsn) as store:
        (event,) = await store.load_events_from_position(0)
    assert event.correlation_id == "r-1"
