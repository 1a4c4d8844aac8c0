"""An elastic consumer group across OS processes: 3 members grow to 5, then shrink to 2 (one
killed with SIGKILL, two stopped) while writers append; the exactly-once read model is exact
and every aggregate's events were handled in order (issue 13 item 4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from helpers.cli_run import run_cli
from helpers.projection_domain import append_more, create_read_model, seed
from helpers.projection_process import Worker, fetch, fetchval, open_transactions

from eventuali_pg import EventStore

pytestmark = pytest.mark.slow

WAIT = 120.0
SUBSCRIPTION = "proj-test"


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    await create_read_model(dsn)
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        yield store


@pytest.fixture
def workers() -> Iterator[dict[str, Worker]]:
    started: dict[str, Worker] = {}
    yield started
    for worker in started.values():
        worker.ensure_dead()


def _start(workers: dict[str, Worker], dsn: str, tmp_path: Path, name: str) -> None:
    args = ("--mode", "exactly_once", "--elastic", "--worker", name, "--batch-size", "20")
    workers[name] = Worker(dsn, *args, "--slow", "0.005", log_dir=tmp_path)


async def _shares(dsn: str) -> dict[str, int]:
    """Partitions per live owner."""
    rows = await fetch(
        dsn,
        "SELECT owner, count(*) AS n FROM eventuali.group_partitions "
        "WHERE owner IS NOT NULL AND lease_expires_at >= now() GROUP BY owner",
    )
    return {row["owner"]: int(row["n"]) for row in rows}


async def _eventually(
    check: Callable[[], Awaitable[bool]], what: str, workers: dict[str, Worker]
) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not await check():  # noqa: ASYNC110 (state of other processes: poll it)
                await asyncio.sleep(0.1)
    except TimeoutError:
        logs = "\n".join(f"--- {n}\n{w.log()[-3000:]}" for n, w in workers.items())
        raise AssertionError(f"not within {WAIT:g}s: {what}\n{logs}") from None


async def _applied(dsn: str) -> int:
    return int(await fetchval(dsn, "SELECT count(*) FROM public.proj_applied"))


async def test_group_grows_to_five_and_shrinks_to_two_with_a_kill(
    store: EventStore, dsn: str, tmp_path: Path, workers: dict[str, Worker]
) -> None:
    ids = await seed(store, aggregates=120, rounds=3)
    stop_writing = asyncio.Event()
    rounds = 0

    async def write(part: list[str]) -> None:
        nonlocal rounds
        while not stop_writing.is_set():
            await append_more(store, part, rounds=1)
            rounds += 1
            await asyncio.sleep(0.01)

    writers = [asyncio.create_task(write(ids[i::2])) for i in range(2)]
    try:
        for name in ("m0", "m1", "m2"):
            _start(workers, dsn, tmp_path, name)

        async def three() -> bool:
            return sorted((await _shares(dsn)).values()) == [5, 5, 6]

        await _eventually(three, "3 members share the 16 partitions 6/5/5", workers)
        before = await _applied(dsn)

        async def progressed() -> bool:
            return await _applied(dsn) > before + 200

        await _eventually(progressed, "the 3 members apply events", workers)

        for name in ("m3", "m4"):
            _start(workers, dsn, tmp_path, name)

        async def five() -> bool:
            return sorted((await _shares(dsn)).values()) == [3, 3, 3, 3, 4]

        await _eventually(five, "5 members share the partitions 4/3/3/3/3", workers)
        report = json.loads((await run_cli("status", "--dsn", dsn, "--json")).stdout)
        (group,) = report["consumer_groups"]
        assert {m["member_id"] for m in group["members"] if m["partitions"]} == {
            "m0", "m1", "m2", "m3", "m4"
        }
        assert all(m["lag"] is not None for m in group["members"])

        # Kill m1 with SIGKILL, preferably inside a batch transaction.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while await open_transactions(dsn) == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        workers["m1"].kill()
        for name in ("m0", "m2"):
            assert await workers[name].stop() == 0, workers[name].log()

        async def two() -> bool:
            return await _shares(dsn) == {"m3": 8, "m4": 8}

        await _eventually(two, "m3 and m4 own 8 partitions each (m1's leases ran out)", workers)
        stop_writing.set()
        await asyncio.gather(*writers)
        head = await store.get_global_position()

        async def all_applied() -> bool:
            return await _applied(dsn) >= head

        await _eventually(all_applied, f"all {head} events applied", workers)
        for name in ("m3", "m4"):
            assert await workers[name].stop() == 0, workers[name].log()
    finally:
        stop_writing.set()
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)

    assert rounds >= 4  # the writers appended throughout
    rows = await fetch(dsn, "SELECT position FROM public.proj_applied")
    positions = [r["position"] for r in rows]
    assert sorted(positions) == list(range(1, head + 1))  # every event exactly once
    wrong = await fetchval(
        dsn,
        "SELECT count(*) FROM public.proj_counters c FULL JOIN (SELECT aggregate_id, "
        "max(aggregate_version) AS v, count(*) AS n FROM eventuali.events "
        "GROUP BY aggregate_id) e USING (aggregate_id) "
        "WHERE c.n IS DISTINCT FROM e.n OR c.last_version IS DISTINCT FROM e.v",
    )
    assert wrong == 0  # the read model is exact
    # An event applied out of order would have been parked (the handler checks the version).
    assert await fetch(dsn, "SELECT global_position FROM eventuali.dead_letters") == []
    rows = await fetch(
        dsn, "SELECT aggregate_id, version, worker FROM public.proj_applied ORDER BY seq"
    )
    last: dict[str, int] = {}
    for row in rows:  # in commit order, each aggregate's versions are 1, 2, 3, ...
        assert row["version"] == last.get(row["aggregate_id"], 0) + 1, row
        last[row["aggregate_id"]] = row["version"]
    assert {row["worker"] for row in rows} == {"m0", "m1", "m2", "m3", "m4"}
    assert await fetch(dsn, "SELECT * FROM eventuali.group_members") == []  # all left
