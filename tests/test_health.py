"""store.health() and `eventuali-pg status --check` against a real PostgreSQL: the listener
killed (and kept from reconnecting) makes the store unhealthy, its reconnect healthy again; lag
over --max-lag fails the check; a failing live-feed read is reported."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from helpers.cli_data import bump
from helpers.cli_run import run_cli

from eventuali_pg import EventStore, EventStreamer
from eventuali_pg.errors import InvalidInputError
from eventuali_pg.health import HealthReport

HANG = 30  # seconds: a hang detector only, never a measurement


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def connections_refused(admin_dsn: str, dsn: str) -> AsyncIterator[None]:
    """No new session can open on the test database inside the block (existing ones live)."""
    database = unquote(urlsplit(dsn).path.lstrip("/"))  # a ?host=/socket/dir holds slashes too
    await _execute(admin_dsn, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        yield
    finally:
        await _execute(admin_dsn, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


async def _until(store: EventStore, wanted: bool) -> HealthReport:
    async with asyncio.timeout(HANG):
        while True:
            report = await store.health()
            if report.healthy is wanted:
                return report
            await asyncio.sleep(0.05)


async def test_a_store_with_a_feed_reports_its_health(dsn: str) -> None:
    await bump(dsn, "c-1", 3)
    async with await EventStore.create(dsn, streamer=EventStreamer()) as store:
        report = await store.health()
        assert report.healthy and report.reasons == ()
        assert report.database_reachable and report.head == 3
        assert report.feed_running and report.listener_connected is True
        assert report.published_position == 3 and report.feed_behind == 0
        assert report.notification_queue_usage is not None
        assert 0.0 <= report.notification_queue_usage < 0.5
        assert report.oldest_lag is None and report.last_feed_error is None
        body = report.to_dict()
        assert body["healthy"] is True and body["head"] == 3 and body["reasons"] == []

        async with store.connection() as conn:
            await conn.execute(
                "INSERT INTO eventuali.checkpoints (subscription_id, position) "
                "VALUES ('fast', 3), ('slow', 1)"
            )
        lagging = await store.health()
        assert lagging.healthy  # no max_lag: lag alone is not a fault
        assert lagging.oldest_lag is not None
        assert (lagging.oldest_lag.subscription_id, lagging.oldest_lag.lag) == ("slow", 2)
        assert (await store.health(max_lag=2)).healthy
        strict = await store.health(max_lag=1)
        assert not strict.healthy
        assert strict.reasons == ("subscription 'slow' is 2 events behind the head (more than 1)",)

        with pytest.raises(InvalidInputError):
            await store.health(max_lag=-1)
        with pytest.raises(InvalidInputError):
            await store.health(max_notification_queue_usage=0)


async def test_a_store_without_a_feed_has_no_listener_to_check(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        report = await store.health()
    assert report.healthy
    assert not report.feed_running and report.listener_connected is None
    assert report.published_position is None and report.feed_behind is None


async def test_a_killed_listener_is_unhealthy_until_it_reconnects(
    dsn: str, pg_admin_dsn: str
) -> None:
    async with await EventStore.create(dsn, streamer=EventStreamer()) as store:
        assert (await store.health()).healthy
        pid = store.listener_pid
        assert pid is not None
        async with connections_refused(pg_admin_dsn, dsn):
            await _execute(pg_admin_dsn, f"SELECT pg_terminate_backend({pid})")
            down = await _until(store, False)
            assert down.listener_connected is False and down.database_reachable
            # (the feed's reads may fail too while no new connection can open)
            assert any("LISTEN connection is down" in reason for reason in down.reasons)
        up = await _until(store, True)
        assert up.listener_connected is True and up.listener_reconnects >= 1
        assert store.listener_pid not in (None, pid)


async def test_a_failing_feed_read_is_reported(dsn: str) -> None:
    async with await EventStore.create(dsn, streamer=EventStreamer(), poll_interval=0.1) as store:
        async with store.connection() as conn:
            await conn.execute("ALTER TABLE eventuali.events RENAME TO events_hidden")
        try:
            failing = await _until(store, False)
        finally:
            async with store.connection() as conn:
                await conn.execute("ALTER TABLE eventuali.events_hidden RENAME TO events")
        assert failing.last_feed_error is not None and failing.last_feed_error.current
        assert "the live feed cannot read new events" in failing.reasons[0]
        recovered = await _until(store, True)
    assert recovered.last_feed_error is not None and not recovered.last_feed_error.current


async def test_a_closed_store_is_reported_unreachable(dsn: str) -> None:
    store = await EventStore.create(dsn)
    await store.close()
    report = await store.health()
    assert not report.healthy and not report.database_reachable and report.head is None


async def test_status_check_exit_codes(dsn: str) -> None:
    await bump(dsn, "c-1", 5)
    await _execute(
        dsn,
        "INSERT INTO eventuali.checkpoints (subscription_id, position) VALUES ('reports', 1)",
    )
    healthy = await run_cli("status", "--dsn", dsn, "--check", "--json")
    assert healthy.returncode == 0, healthy.stderr
    health = healthy.json()["health"]
    assert health["healthy"] is True and health["listener_connected"] is True
    assert health["oldest_lag"] == {"subscription_id": "reports", "checkpoint": 1, "lag": 4}

    assert (await run_cli("status", "--dsn", dsn, "--check", "--max-lag", "4")).returncode == 0
    behind = await run_cli("status", "--dsn", dsn, "--check", "--max-lag", "3")
    assert behind.returncode == 3, behind.stderr
    assert "UNHEALTHY" in behind.stdout
    assert "subscription 'reports' is 4 events behind the head" in behind.stdout

    usage = await run_cli("status", "--dsn", dsn, "--max-lag", "3")
    assert usage.returncode == 2 and "--max-lag goes with --check" in usage.stderr

    unreachable = await run_cli(
        "status", "--dsn", "postgresql://postgres@127.0.0.1:1/postgres", "--check"
    )
    assert unreachable.returncode == 1 and unreachable.stderr.startswith("error: ")
