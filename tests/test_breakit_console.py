"""Hostile requests to the console (in process, real PostgreSQL): a value the store refuses,
a number written in non-ASCII digits, a NUL in a subscription id are a 400 naming the
problem, never a 500."""

from __future__ import annotations

import httpx
import pytest
from helpers.cli_dead_letters_data import park_letters
from helpers.console import write_notes
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from eventuali_pg import EventStore, InvalidInputError
from eventuali_pg.console import create_app
from eventuali_pg.projections import CheckpointStore, DeadLetterQueue

#: Connections opened at start: no request opens one the shutdown could cut mid-connect
#: (cancelling asyncpg while it connects leaks an unretrieved future; not what these test).
POOL = {"pool_min_size": 3}


async def answers(
    app: Starlette, requests: list[tuple[str, str, dict[str, str] | None]]
) -> list[httpx.Response]:
    """The answers of ``app`` to ``requests`` (method, url, form), its lifespan entered and
    left around them."""
    found = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            for method, url, data in requests:
                found.append(await client.request(method, url, data=data))
    return found


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("aggregate_id=x&from_version=2147483648", "from_version"),
        ("aggregate_id=x&from_version=9223372036854775807", "from_version"),
        ("aggregate_id=%00", "NUL"),
        ("event_type=%00", "NUL"),
        ("after=1&aggregate_type=%00", "NUL"),
        ("aggregate_type=" + "a" * 2000, "bytes long"),
        ("aggregate_id=" + "a" * 2000, "bytes long"),
    ],
)
async def test_events_page_refuses_what_the_store_refuses(dsn: str, query: str, named: str) -> None:
    (response,) = await answers(
        create_app(dsn, store_options=POOL), [("GET", f"/events?{query}", None)]
    )
    assert response.status_code == 400, response.text
    assert named in response.text


@pytest.mark.parametrize(
    "url",
    [
        "/dead-letters/show?subscription=s&position=%C2%B2",  # '²'.isdigit() is True
        "/dead-letters/retry?subscription=s&position=%C2%B2",
        "/dead-letters?subscription=%00",
        "/dead-letters/show?subscription=%00&position=1",
        "/dead-letters/discard?subscription=%00&position=1",
    ],
)
async def test_dead_letter_pages_refuse_bad_keys(dsn: str, url: str) -> None:
    (response,) = await answers(
        create_app(dsn, allow_actions=True, store_options=POOL), [("GET", url, None)]
    )
    assert response.status_code == 400, response.text


async def test_a_posted_action_refuses_non_ascii_digits(dsn: str) -> None:
    app = create_app(dsn, allow_actions=True, store_options=POOL)
    csrf = app.state.console.csrf
    form = {"subscription": "s", "position": "\u00b2", "csrf": csrf}
    for response in await answers(
        app, [("POST", f"/dead-letters/{action}", form) for action in ("discard", "retry")]
    ):
        assert response.status_code == 400, response.text


@pytest.mark.parametrize("subscription", ["\x00", "a\x00b", "a\ud800"])
async def test_subscription_ids_postgresql_cannot_store_are_refused(
    dsn: str, subscription: str
) -> None:
    async with await EventStore.create(dsn) as store:
        with pytest.raises(InvalidInputError, match=r"NUL character|lone surrogate"):
            await DeadLetterQueue(store).list(subscription)
        with pytest.raises(InvalidInputError, match=r"NUL character|lone surrogate"):
            await CheckpointStore(store).get(subscription)


async def test_ids_with_surrounding_spaces_are_shown_as_they_are(dsn: str) -> None:
    """Ids are exact: ' note' is another aggregate than 'note', ' parking' another
    subscription than 'parking' (a stripped parameter showed the wrong one, or nothing)."""
    poisons = await park_letters(dsn, (" parking",))
    async with await EventStore.create(dsn) as store:
        await write_notes(store, "note", ["plain"])
        await write_notes(store, " note", ["spaced"])
    app = create_app(dsn, allow_actions=True, store_options=POOL)
    spaced, listing, letter, discard = await answers(
        app,
        [
            ("GET", "/events?aggregate_id=%20note", None),
            ("GET", "/dead-letters?subscription=%20parking", None),
            ("GET", f"/dead-letters/show?subscription=%20parking&position={poisons[0]}", None),
            (
                "POST",
                "/dead-letters/discard",
                {
                    "subscription": " parking",
                    "position": str(poisons[0]),
                    "csrf": app.state.console.csrf,
                },
            ),
        ],
    )
    assert spaced.status_code == 200
    assert "spaced" in spaced.text and "plain" not in spaced.text
    assert listing.status_code == 200 and f">{poisons[1]}<" in listing.text
    assert letter.status_code == 200, letter.text
    assert discard.status_code == 200, discard.text
    async with await EventStore.create(dsn) as store:
        assert await DeadLetterQueue(store).count(" parking") == 1


async def test_an_elastic_groups_partitions_are_folded_into_one_subscription(dsn: str) -> None:
    """Like a fixed group's: one row on the projections page and one series per metric, at the
    lowest of its partitions' checkpoints (not one per partition)."""
    async with await EventStore.create(dsn) as store:
        await write_notes(store, "note", ["a", "b", "c"])
        async with store.connection() as conn:
            await conn.execute(
                "INSERT INTO eventuali.checkpoints (subscription_id, position) VALUES "
                "('views#share-0-of-2', 1), ('views#share-1-of-2', 3)"
            )
    page, metrics = await answers(
        create_app(dsn, store_options=POOL),
        [("GET", "/projections", None), ("GET", "/metrics", None)],
    )
    assert page.status_code == 200 and "#share-" not in page.text
    lags = {
        sample.labels["subscription"]: sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "eventuali_pg_subscription_lag_events"
    }
    assert lags == {"views": 2}
