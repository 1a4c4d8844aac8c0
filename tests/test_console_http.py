"""The web console over HTTP (a real `eventuali-pg console` process, real PostgreSQL): /metrics
parses with prometheus_client's parser, /health follows the LISTEN connection, a token guards
any other address than loopback, nothing stored is rendered as HTML, actions need the flag,
a confirmation and the CSRF token."""

from __future__ import annotations

import asyncio
import re

import httpx
from helpers.cli_dead_letters_data import park_letters
from helpers.cli_run import run_cli
from helpers.console import SCRIPT, console_server, listener_pids, write_notes
from prometheus_client.parser import text_string_to_metric_families
from test_health import _execute, connections_refused

from eventuali_pg import ElasticGroup, EventStore
from eventuali_pg.console import is_loopback
from eventuali_pg.projections import (
    ConsumerGroup,
    DeadLetterQueue,
    Projection,
    ProjectionRunner,
)

HANG = 30  # seconds: a hang detector only


async def _seed_checkpoints(dsn: str, head: int) -> None:
    await _execute(
        dsn,
        "INSERT INTO eventuali.checkpoints (subscription_id, position) VALUES "
        f"('current', {head}), ('behind', {head - 2})",
    )


async def test_metrics_parse_and_report_the_database(dsn: str) -> None:
    poisons = await park_letters(dsn, ("parking",))
    async with await EventStore.create(dsn) as store:
        head = await store.get_global_position()
    await _seed_checkpoints(dsn, head)
    async with console_server(dsn) as server, httpx.AsyncClient(timeout=HANG) as client:
        response = await client.get(f"{server.url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}

        def value(name: str, **labels: str) -> float:
            (sample,) = [s for s in families[name].samples if s.labels == labels]
            return sample.value

        assert value("eventuali_pg_head_position") == head
        assert value("eventuali_pg_subscription_lag_events", subscription="behind") == 2
        assert value("eventuali_pg_subscription_checkpoint", subscription="current") == head
        assert value("eventuali_pg_dead_letters", subscription="parking") == len(poisons)
        assert value("eventuali_pg_listener_connected") == 1
        assert value("eventuali_pg_healthy") == 1
        assert value("eventuali_pg_listen_connections") >= 1
        assert 0 <= value("eventuali_pg_notification_queue_usage_ratio") < 0.5
        assert value("eventuali_pg_write_rate_events_per_second") > 0
        assert value("eventuali_pg_feed_published_position") == head
        assert "eventuali_pg_subscription_progress_per_second" in families

        healthy = await client.get(f"{server.url}/health")
        assert healthy.status_code == 200 and healthy.json()["healthy"] is True
        lagging = await client.get(f"{server.url}/health", params={"max_lag": 1})
        assert lagging.status_code == 503
        assert lagging.json()["reasons"] == [
            "subscription 'behind' is 2 events behind the head (more than 1)"
        ]
        assert (
            await client.get(f"{server.url}/health", params={"max_lag": "x"})
        ).status_code == 400
        for page in ("/", "/events", "/tail", "/projections", "/dead-letters"):
            answer = await client.get(f"{server.url}{page}")
            assert answer.status_code == 200, (page, answer.text)
            assert "script-src 'nonce-" in answer.headers["content-security-policy"]
    assert "Traceback" not in server.text and "ERROR" not in server.text, server.text


async def _health_until(client: httpx.AsyncClient, url: str, status: int) -> httpx.Response:
    async with asyncio.timeout(HANG):
        while True:
            response = await client.get(f"{url}/health")
            if response.status_code == status:
                return response
            await asyncio.sleep(0.05)


async def test_health_follows_the_listener(dsn: str, pg_admin_dsn: str) -> None:
    async with console_server(dsn) as server, httpx.AsyncClient(timeout=HANG) as client:
        assert (await client.get(f"{server.url}/health")).status_code == 200
        (pid,) = await listener_pids(dsn)  # the console's
        async with connections_refused(pg_admin_dsn, dsn):
            await _execute(pg_admin_dsn, f"SELECT pg_terminate_backend({pid})")
            down = await _health_until(client, server.url, 503)
            body = down.json()
            assert body["healthy"] is False and body["listener_connected"] is False
            assert any("LISTEN connection is down" in reason for reason in body["reasons"])
        up = await _health_until(client, server.url, 200)
        assert up.json()["listener_connected"] is True and up.json()["listener_reconnects"] >= 1


async def test_another_address_needs_a_token(dsn: str) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    refused = await run_cli("console", "--dsn", dsn, "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "--host 0.0.0.0 is reachable from other machines: give --token" in refused.stderr

    token = "s3cret-token"
    async with (
        console_server(dsn, "--host", "0.0.0.0", "--token", token, token=token) as server,
        httpx.AsyncClient(timeout=HANG) as client,
    ):
        url = server.url
        assert (await client.get(f"{url}/health")).status_code == 401
        assert (await client.get(f"{url}/metrics")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await client.get(f"{url}/events", headers=wrong)).status_code == 401
        bearer = {"authorization": f"Bearer {token}"}
        assert (await client.get(f"{url}/metrics", headers=bearer)).status_code == 200

        page = await client.get(f"{url}/events?limit=5", headers={"accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fevents%3Flimit%3D5"
        failed = await client.post(f"{url}/login", data={"token": "nope", "next": "/events"})
        assert failed.status_code == 401 and "not the console" in failed.text
        login = await client.post(f"{url}/login", data={"token": token, "next": "/events"})
        assert login.status_code == 303 and login.headers["location"] == "/events"
        cookie = login.cookies["eventuali_console"]
        assert token not in cookie
        assert "httponly" in login.headers["set-cookie"].lower()
        assert "samesite=strict" in login.headers["set-cookie"].lower()
        async with httpx.AsyncClient(timeout=HANG) as browser:  # a client with only the cookie
            after = await browser.get(
                f"{url}/events", headers={"cookie": f"eventuali_console={cookie}"}
            )
            assert after.status_code == 200
            forged = await browser.get(
                f"{url}/events", headers={"cookie": f"eventuali_console={token}"}
            )
            assert forged.status_code == 401
        offsite = await client.post(f"{url}/login", data={"token": token, "next": "//evil.example"})
        assert offsite.headers["location"] == "/"


async def test_stored_text_is_never_html(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        (position,) = await write_notes(store, "<i>notebook</i>", [SCRIPT])
    async with console_server(dsn) as server, httpx.AsyncClient(timeout=HANG) as client:
        for path in (
            "/events",
            f"/events?after={position - 1}&limit=1",
            "/events?aggregate_id=%3Ci%3Enotebook%3C%2Fi%3E",
        ):
            page = (await client.get(f"{server.url}{path}")).text
            assert f'data-position="{position}"' in page
            assert "<script>window.__pwned" not in page and "<b>bold" not in page
            assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;b&gt;bold?&lt;/b&gt;" in page
            assert "<i>notebook</i>" not in page and "&lt;i&gt;notebook&lt;/i&gt;" in page
        assert (await client.get(f"{server.url}/events?after=-1")).status_code == 400


async def test_actions_need_the_flag_a_confirmation_and_the_csrf_token(dsn: str) -> None:
    poisons = await park_letters(dsn, ("parking",))
    show = f"/dead-letters/show?subscription=parking&position={poisons[0]}"
    key = {"subscription": "parking", "position": str(poisons[0])}
    async with console_server(dsn) as server, httpx.AsyncClient(timeout=HANG) as client:
        page = await client.get(f"{server.url}{show}")
        assert page.status_code == 200 and "cannot digest event" in page.text
        assert "Traceback (most recent call last)" in page.text
        assert 'id="retry"' not in page.text and 'id="discard"' not in page.text
        for action in ("retry", "discard"):
            assert (
                await client.get(f"{server.url}/dead-letters/{action}", params=key)
            ).status_code == 403
            assert (
                await client.post(f"{server.url}/dead-letters/{action}", data=key)
            ).status_code == 403
        assert (
            await client.get(f"{server.url}/dead-letters/show?subscription=parking&position=1")
        ).status_code == 404

    async with (
        console_server(dsn, "--allow-actions") as server,
        httpx.AsyncClient(timeout=HANG) as client,
    ):
        page = await client.get(f"{server.url}{show}")
        assert 'id="discard"' in page.text
        assert (
            'id="retry"' not in page.text and "--projection parking=module:attribute" in page.text
        )
        confirm = await client.get(f"{server.url}/dead-letters/discard", params=key)
        assert confirm.status_code == 200 and 'id="confirm"' in confirm.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
        assert csrf is not None
        forged = await client.post(f"{server.url}/dead-letters/discard", data=key)
        assert forged.status_code == 403
        done = await client.post(
            f"{server.url}/dead-letters/discard", data={**key, "csrf": csrf.group(1)}
        )
        assert done.status_code == 200 and 'data-outcome="discarded"' in done.text
    async with await EventStore.create(dsn) as store:
        assert await DeadLetterQueue(store).get("parking", poisons[0]) is None
        assert await DeadLetterQueue(store).get("parking", poisons[1]) is not None


class _Idle(Projection):
    async def handle_event(self, event: object) -> None:
        return None


async def _row(client: httpx.AsyncClient, url: str, subscription: str, needle: str) -> str:
    """The projections page's row of ``subscription`` once it contains ``needle``."""
    async with asyncio.timeout(HANG):
        while True:
            page = (await client.get(f"{url}/projections")).text
            if f'data-subscription="{subscription}"' in page:
                row = page.split(f'data-subscription="{subscription}"', 1)[1].split("</tr>")[0]
                if needle in row:
                    return row
            await asyncio.sleep(0.1)


async def test_projections_show_lag_holders_and_group_members(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await write_notes(store, "nb-1", ["one", "two", "three"])
        head = await store.get_global_position()
        single = ProjectionRunner(store, _Idle(), subscription_id="holder-demo", single_active=True)
        members = [
            ProjectionRunner(
                store,
                _Idle(),
                subscription_id="group-demo",
                group=ConsumerGroup(size=2, member=member, partitions=4),
                single_active=True,
            )
            for member in (0, 1)
        ]
        async with (
            single,
            members[0],
            members[1],
            console_server(dsn) as server,
            httpx.AsyncClient(timeout=HANG) as client,
        ):
            for runner in (single, *members):
                await runner.wait_for_checkpoint(head, timeout=HANG)
            row = await _row(client, server.url, "holder-demo", "pid ")
            assert re.search(r'class="holder">pid \d+', row), row
            assert f'data-checkpoint="{head}" data-lag="0"' in row, row
            group = await _row(client, server.url, "group-demo", "member 1 of 2")
            assert "4 partitions" in group and "member 0 of 2: pid " in group, group
            assert f'data-checkpoint="{head}" data-lag="0"' in group, group


async def test_projections_show_an_elastic_groups_members_and_shares(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await write_notes(store, "nb-1", ["one", "two", "three"])
        members = [
            ProjectionRunner(
                store,
                _Idle(),
                subscription_id="elastic-demo",
                group=ElasticGroup(
                    partitions=4, member_id=name, lease_seconds=2.0, heartbeat_seconds=0.2
                ),
            )
            for name in ("alpha", "beta")
        ]
        async with (
            members[0],
            members[1],
            console_server(dsn) as server,
            httpx.AsyncClient(timeout=HANG) as client,
        ):
            # One row for the group (its four partition checkpoints folded), each member with
            # its share once the two have split the partitions.
            row = await _row(client, server.url, "elastic-demo", "member beta: partitions ")
            assert "4 partitions" in row and "member alpha: partitions " in row, row
            shares = re.findall(r"member (?:alpha|beta): partitions (\d+(?:, \d+)*)", row)
            owned = sorted(int(p) for share in shares for p in share.split(", "))
            assert owned == [0, 1, 2, 3], row
            page = (await client.get(f"{server.url}/projections")).text
            assert page.count('data-subscription="elastic-demo#share-') == 0, page
