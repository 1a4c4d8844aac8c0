"""Issue 19: the example FastAPI app (examples/web_shop.py) under a real uvicorn process, driven
with httpx: commands and 409s, read-your-writes across workers, server-sent events from a
position or Last-Event-ID, clients hanging up, SIGTERM with a stream open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from helpers.web_server import Server, uvicorn_server

from eventuali_pg import EventStore, event_to_json

APP = "web_shop:app"
HANG = 30  # seconds: only a hang detector, never a measure


def _sqlalchemy_style(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def server(dsn: str) -> AsyncIterator[Server]:
    # DATABASE_URL-style URL with a driver, as a newcomer's .env has it
    async with uvicorn_server(APP, _sqlalchemy_style(dsn)) as running:
        yield running


def _fresh_client() -> httpx.AsyncClient:
    """A client that opens a new connection per request (so requests spread over workers)."""
    return httpx.AsyncClient(
        timeout=HANG, limits=httpx.Limits(max_keepalive_connections=0)
    )


async def _sse_messages(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """SSE messages with data, as dicts of their fields (comments and ``retry:`` skipped)."""
    message: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in message:
                yield message
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            message[name] = value


async def _place(client: httpx.AsyncClient, url: str, customer: str, amount: str) -> Any:
    response = await client.post(
        f"{url}/orders",
        json={"customer": customer, "amount": amount},
        headers={"x-request-id": f"req-{customer}-{amount}", "x-user": customer},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_commands_conflicts_and_read_your_writes(server: Server, dsn: str) -> None:
    async with _fresh_client() as client:
        placed = await _place(client, server.url, "ada", "12.50")
        assert placed["position"] == 1 and placed["version"] == 1
        summary = await client.get(
            f"{server.url}/customers/ada/summary", params={"after": placed["position"]}
        )
        assert summary.json() == {"customer": "ada", "orders": 1, "total": "12.50"}

        cancel = {"reason": "changed my mind", "expected_version": 1}
        first = await client.post(f"{server.url}/orders/{placed['id']}/cancel", json=cancel)
        assert first.status_code == 200, first.text
        # the same command again, from the version the client saw: someone got there first
        second = await client.post(f"{server.url}/orders/{placed['id']}/cancel", json=cancel)
        assert second.status_code == 409, second.text
        assert second.json()["actual_version"] == 2
        summary = await client.get(
            f"{server.url}/customers/ada/summary", params={"after": first.json()["position"]}
        )
        assert summary.json() == {"customer": "ada", "orders": 0, "total": "0.00"}

        customer = (await client.post(f"{server.url}/customers", params={"name": "Ada"})).json()
        assert (await client.get(f"{server.url}/orders/{customer['id']}")).status_code == 404
        order = (await client.get(f"{server.url}/orders/{placed['id']}")).json()
        assert order["cancelled"] is True and order["version"] == 2

    async with await EventStore.create(dsn) as store:
        placed_event, _cancelled = await store.load_events(placed["id"])
    assert (placed_event.correlation_id, placed_event.user_id) == ("req-ada-12.50", "ada")


async def test_server_sent_events_from_a_position_and_last_event_id(
    server: Server, dsn: str
) -> None:
    async with _fresh_client() as client:
        for amount in ("1", "2", "3"):
            await _place(client, server.url, "bob", amount)
        async with await EventStore.create(dsn) as store:
            stored = await store.load_events_from_position(0)

        async with client.stream("GET", f"{server.url}/events?from_position=0") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            messages = _sse_messages(response)
            for event in stored:
                message = await anext(messages)
                assert message["id"] == str(event.global_position)
                # the tail --json line (key order aside: this process has no OrderPlaced class)
                assert json.loads(message["data"]) == json.loads(event_to_json(event))
            live = await _place(client, server.url, "bob", "4")
            message = await anext(messages)
            assert message["id"] == str(live["position"])
            assert json.loads(message["data"])["payload"] == {"customer": "bob", "amount": "4"}

        # a reconnecting EventSource sends Last-Event-ID; it wins over the query's position
        async with client.stream(
            "GET", f"{server.url}/events?from_position=0", headers={"last-event-id": "2"}
        ) as response:
            message = await anext(_sse_messages(response))
            assert message["id"] == "3"

        # filtered stream
        await client.post(f"{server.url}/customers", params={"name": "Cy"})
        async with client.stream(
            "GET", f"{server.url}/events?from_position=0&aggregate_type=Customer"
        ) as response:
            message = await anext(_sse_messages(response))
            assert json.loads(message["data"])["event_type"] == "CustomerRegistered"

        beyond = await client.get(f"{server.url}/events?from_position=999")
        assert beyond.status_code == 400
        assert beyond.json()["error"] == "PositionBeyondHeadError"
        assert "head is 5" in beyond.json()["detail"]
        bad = await client.get(f"{server.url}/events", headers={"last-event-id": "abc"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]


async def _open_streams(url: str, count: int) -> tuple[httpx.AsyncClient, list[Any]]:
    client = httpx.AsyncClient(timeout=HANG)
    streams = []
    for _ in range(count):
        context = client.stream("GET", f"{url}/events")
        response = await context.__aenter__()
        chunks = response.aiter_raw()  # kept: a dropped iterator would close the response
        await anext(chunks)  # the opening comment: the stream is subscribed
        streams.append((context, chunks))
    return client, streams


async def _streams_open(client: httpx.AsyncClient, url: str) -> int:
    return int((await client.get(f"{url}/health")).json()["streams"])


async def test_clients_hanging_up_release_their_receivers_at_once(server: Server) -> None:
    client, streams = await _open_streams(server.url, 5)
    async with _fresh_client() as probe:
        assert await _streams_open(probe, server.url) == 5
        for context, _chunks in streams:
            await context.__aexit__(None, None, None)  # the client hangs up
        await client.aclose()
        async with asyncio.timeout(HANG):
            left = await _streams_open(probe, server.url)
            while left:
                await asyncio.sleep(0.05)
                left = await _streams_open(probe, server.url)
        # still serving afterwards
        await _place(probe, server.url, "dee", "1")


async def test_sigterm_with_a_stream_open_exits_promptly_and_cleanly(dsn: str) -> None:
    async with uvicorn_server(APP, dsn) as server:
        async with (
            httpx.AsyncClient(timeout=HANG) as client,
            client.stream("GET", f"{server.url}/events?from_position=0") as response,
        ):
            chunks = response.aiter_raw()
            await anext(chunks)
            server.signal(signal.SIGTERM)
            async with asyncio.timeout(HANG):
                rest = [chunk async for chunk in chunks]  # the stream ends cleanly
        assert all(chunk.startswith(b":") for chunk in rest)  # heartbeats at most
        code = await server.wait_exit(HANG)
    assert code in (0, -signal.SIGTERM), server.text
    assert "Application shutdown complete" in server.text, server.text
    assert "Traceback" not in server.text, server.text


async def test_two_workers_read_your_writes_and_standby_stats(dsn: str) -> None:
    async with uvicorn_server(APP, dsn, workers=2) as server, _fresh_client() as client:
        pids: dict[int, dict[str, Any]] = {}
        last = 0
        for number in range(12):
            placed = await _place(client, server.url, "eve", f"{number + 1}")
            last = placed["position"]
            # a new connection: any worker answers, the one running the projection or not
            summary = await client.get(
                f"{server.url}/customers/eve/summary", params={"after": last}
            )
            assert summary.status_code == 200, summary.text
            assert summary.json()["orders"] == number + 1
        async with asyncio.timeout(HANG):
            while len(pids) < 2 or any(
                stats["projection"]["checkpoint"] < last for stats in pids.values()
            ):
                health = (await client.get(f"{server.url}/health")).json()
                pids[health["pid"]] = health
                await asyncio.sleep(0.02)
        active = sorted(stats["projection"]["active"] for stats in pids.values())
        assert active == [False, True]  # one runs the projection, the other stands by
        # and SIGTERM with a stream open on each worker still exits promptly
        client2, streams = await _open_streams(server.url, 4)
        server.signal(signal.SIGTERM)
        code = await server.wait_exit(HANG)
        for context, _chunks in streams:
            await context.__aexit__(None, None, None)
        await client2.aclose()
    assert code == 0, server.text
    assert server.text.count("Application shutdown complete") == 2, server.text
    assert "Traceback" not in server.text, server.text


async def _worker_health(
    client: httpx.AsyncClient, url: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The /health of a worker meeting ``condition`` (new connections until one answers)."""
    async with asyncio.timeout(HANG):
        while True:
            with contextlib.suppress(httpx.TransportError):
                health: dict[str, Any] = (await client.get(f"{url}/health")).json()
                if condition(health):
                    return health
            await asyncio.sleep(0.02)


async def test_kill_9_of_the_worker_running_the_projection(dsn: str) -> None:
    async with uvicorn_server(APP, dsn, workers=2) as server, _fresh_client() as client:
        await _place(client, server.url, "fay", "1")
        holder = await _worker_health(client, server.url, lambda h: h["projection"]["active"])
        os.kill(holder["pid"], signal.SIGKILL)  # mid-whatever: its lease dies with its session
        for number in range(2, 7):
            async with asyncio.timeout(HANG):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        placed = await _place(client, server.url, "fay", str(number))
                        break
                    await asyncio.sleep(0.05)
            summary = await client.get(
                f"{server.url}/customers/fay/summary",
                params={"after": placed["position"], "timeout": HANG},
            )
            assert summary.status_code == 200, summary.text
            assert summary.json()["orders"] == number  # exactly once, across the take-over
        successor = await _worker_health(
            client, server.url, lambda h: h["projection"]["active"] and h["pid"] != holder["pid"]
        )
        assert successor["projection"]["checkpoint"] >= placed["position"]
