"""Elastic consumer groups at the limits (real PostgreSQL): the partition hash agrees between
Python and SQL for any text id, and a group's settings are refused before anything is written
when the database could not store them (or the member could not hold them in memory)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventuali_pg import ElasticGroup, EventStore, InvalidInputError, ProjectionRunner
from eventuali_pg.projections import Projection, share_partition
from eventuali_pg.projections.elastic import MAX_PARTITIONS
from eventuali_pg.projections.sql import SHARE_HASH

#: Text PostgreSQL can store: no NUL, no lone surrogate.
STORABLE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=300,
)


async def test_the_partition_hash_agrees_with_sql_for_any_text(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            ids=st.lists(STORABLE, min_size=1, max_size=20), partitions=st.integers(1, 2**31 - 1)
        )
        def check(ids: list[str], partitions: int) -> None:
            found.append((ids, partitions))

        found: list[tuple[list[str], int]] = []
        check()
        for ids, partitions in found:
            rows = await conn.fetch(
                f"SELECT {SHARE_HASH} % $2 AS p FROM unnest($1::text[]) WITH ORDINALITY "
                "AS t(aggregate_id, n) ORDER BY n",
                ids,
                partitions,
            )
            assert [r["p"] for r in rows] == [share_partition(i, partitions) for i in ids]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "options",
    [
        {"partitions": MAX_PARTITIONS + 1},
        {"partitions": 2**31},
        {"member_id": "a\x00b"},
        {"member_id": "a\ud800"},
    ],
)
def test_settings_the_group_cannot_hold_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        ElasticGroup(**options)  # type: ignore[arg-type]


class Idle(Projection):
    async def handle_event(self, event: object) -> None:
        return None


async def test_the_most_partitions_allowed_work(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        group = ElasticGroup(
            partitions=MAX_PARTITIONS, member_id="m", lease_seconds=2, heartbeat_seconds=0.2
        )
        runner = ProjectionRunner(store, Idle(), subscription_id="wide", group=group)
        await runner.start()
        try:
            async with asyncio.timeout(60):  # a hang detector only
                while len(runner.owned_partitions) < MAX_PARTITIONS:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            async with store.connection() as conn:
                rows = await conn.fetchval(
                    "SELECT count(*) FROM eventuali.group_partitions WHERE owner = 'm'"
                )
            assert rows == MAX_PARTITIONS
        finally:
            await runner.stop()
