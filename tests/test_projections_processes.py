"""Projections across processes: kill -9 mid-batch (exactly-once and at-least-once), a consumer
group of three processes, and a single active consumer handing over when its holder dies."""

from __future__ import annotations

import asyncio
import itertools
import random
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from helpers.projection_domain import append_more, create_read_model, seed
from helpers.projection_process import (
    Worker,
    checkpoint,
    fetch,
    fetchval,
    open_transactions,
    wait_until,
)

from eventuali_pg import EventStore
from eventuali_pg.projections.groups import DEFAULT_PARTITIONS

pytestmark = pytest.mark.slow


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[EventStore]:
    await create_read_model(dsn)
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        yield store


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.ensure_dead()


def _start(workers: list[Worker], dsn: str, tmp_path: Path, *args: str) -> Worker:
    worker = Worker(dsn, *args, log_dir=tmp_path)
    workers.append(worker)
    return worker


async def _count(dsn: str, table: str) -> int:
    return int(await fetchval(dsn, f"SELECT count(*) FROM public.{table}"))


async def _dead_letters(dsn: str) -> list[object]:
    return await fetch(dsn, "SELECT global_position, error FROM eventuali.dead_letters")


async def _assert_applied_exactly_once(dsn: str, head: int) -> None:
    rows = await fetch(dsn, "SELECT position FROM public.proj_applied ORDER BY position")
    assert [row["position"] for row in rows] == list(range(1, head + 1))
    counters = await fetch(
        dsn,
        "SELECT c.aggregate_id, c.n, c.last_version, max(e.aggregate_version) AS version, "
        "count(e.*) AS events FROM public.proj_counters c JOIN eventuali.events e "
        "USING (aggregate_id) GROUP BY c.aggregate_id, c.n, c.last_version",
    )
    assert counters
    assert all(r["n"] == r["events"] == r["version"] == r["last_version"] for r in counters)
    total = await fetchval(dsn, "SELECT sum(n) FROM public.proj_counters")
    assert total == head
    assert await _dead_letters(dsn) == []


async def test_exactly_once_survives_kill_9_mid_batch(
    store: EventStore, dsn: str, tmp_path: Path, workers: list[Worker]
) -> None:
    ids = await seed(store, aggregates=40, rounds=30)  # 1200 events
    rng = random.Random()
    args = ("--mode", "exactly_once", "--batch-size", "25", "--slow", "0.03")
    kills_in_transaction = 0
    for round_number in range(4):
        before = await _count(dsn, "proj_applied")
        worker = _start(workers, dsn, tmp_path, *args, "--worker", f"k{round_number}")
        await wait_until(lambda b=before: _progressed(dsn, b), timeout=30)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        # Kill while the worker is inside its batch transaction (it sleeps in there).
        try:
            async with asyncio.timeout(10):
                while await open_transactions(dsn) == 0:
                    assert worker.process.poll() is None, worker.log()
                    await asyncio.sleep(0.005)
            kills_in_transaction += 1
        except TimeoutError:
            pass  # it had nothing left to do: killed idle
        worker.kill()
        await append_more(store, ids, rounds=2)  # 80 more events while nobody runs
    assert kills_in_transaction >= 3
    head = await store.get_global_position()
    assert await _count(dsn, "proj_applied") < head  # the kills left work to do

    final = _start(workers, dsn, tmp_path, *args, "--worker", "final")
    await wait_until(lambda: _applied_all(dsn, head), timeout=60)
    assert await final.stop() == 0, final.log()
    await _assert_applied_exactly_once(dsn, head)
    assert await checkpoint(dsn, "proj-test") == head


async def _progressed(dsn: str, before: int) -> bool:
    return await _count(dsn, "proj_applied") > before


async def _applied_all(dsn: str, head: int) -> bool:
    return await _count(dsn, "proj_applied") >= head


async def test_at_least_once_after_kill_9_misses_nothing(
    store: EventStore, dsn: str, tmp_path: Path, workers: list[Worker]
) -> None:
    await seed(store, aggregates=30, rounds=30)  # 900 events
    head = await store.get_global_position()
    every, batch = 100, 20
    args = ("--mode", "at_least_once", "--batch-size", str(batch), "--slow", "0.02")
    args += ("--checkpoint-every", str(every), "--checkpoint-interval", "3600")
    worker = _start(workers, dsn, tmp_path, *args, "--worker", "a")

    async def delivered_some() -> bool:
        return await _count(dsn, "proj_deliveries") >= 250 + random.randint(0, 100)

    await wait_until(delivered_some, timeout=30)
    worker.kill()
    stored = await checkpoint(dsn, "proj-test")
    before_kill = int(await fetchval(dsn, "SELECT max(position) FROM public.proj_deliveries"))
    assert 0 < stored <= before_kill < head

    second = _start(workers, dsn, tmp_path, *args, "--worker", "b")

    async def all_delivered() -> bool:
        count = await fetchval(dsn, "SELECT count(DISTINCT position) FROM public.proj_deliveries")
        return int(count) == head

    await wait_until(all_delivered, timeout=60)
    assert await second.stop() == 0, second.log()
    assert await checkpoint(dsn, "proj-test") == head  # written at the clean stop

    rows = await fetch(dsn, "SELECT position, worker FROM public.proj_deliveries")
    counts = Counter(row["position"] for row in rows)
    assert set(counts) == set(range(1, head + 1))  # nothing missed
    duplicates = sorted(p for p, n in counts.items() if n > 1)
    assert all(n <= 2 for n in counts.values())
    # Only events after the last checkpoint before the crash came again, at most one interval.
    assert all(stored < p <= before_kill for p in duplicates)
    assert len(duplicates) <= every + batch
    assert duplicates == list(range(stored + 1, before_kill + 1))


async def test_consumer_group_of_three_processes(
    store: EventStore, dsn: str, tmp_path: Path, workers: list[Worker]
) -> None:
    ids = await seed(store, aggregates=300, rounds=5)  # 1500 events
    group = []
    for member in range(3):
        args = ("--mode", "exactly_once", "--group-size", "3", "--member", str(member))
        args += ("--worker", f"m{member}", "--batch-size", "100")
        group.append(_start(workers, dsn, tmp_path, *args))
    await append_more(store, ids, rounds=5)  # 1500 more while they run
    head = await store.get_global_position()
    assert head == 3000
    await wait_until(lambda: _applied_all(dsn, head), timeout=60)
    for worker in group:
        assert await worker.stop() == 0, worker.log()

    await _assert_applied_exactly_once(dsn, head)
    rows = await fetch(
        dsn, "SELECT aggregate_id, version, worker FROM public.proj_applied ORDER BY seq"
    )
    members: dict[str, set[str]] = {}
    versions: dict[str, list[int]] = {}
    for row in rows:
        members.setdefault(row["aggregate_id"], set()).add(row["worker"])
        versions.setdefault(row["aggregate_id"], []).append(row["version"])
    assert len(members) == 300
    for aggregate_id, seen_by in members.items():
        expected = f"m{zlib.crc32(aggregate_id.encode()) % DEFAULT_PARTITIONS % 3}"
        assert seen_by == {expected}
        assert versions[aggregate_id] == list(range(1, 11))
    per_member = Counter(row["worker"] for row in rows)
    assert set(per_member) == {"m0", "m1", "m2"}
    for partition in range(DEFAULT_PARTITIONS):  # every partition's checkpoint is at the head
        assert await checkpoint(dsn, f"proj-test#partition-{partition}-of-16") == head


async def test_single_active_consumer_takes_over_when_holder_dies(
    store: EventStore, dsn: str, tmp_path: Path, workers: list[Worker]
) -> None:
    await seed(store, aggregates=20, rounds=40)  # 800 events
    head = await store.get_global_position()
    args = ("--mode", "exactly_once", "--single-active", "--batch-size", "20", "--slow", "0.03")
    candidates = [_start(workers, dsn, tmp_path, *args, "--worker", f"s{i}") for i in range(3)]

    async def some_applied() -> bool:
        return await _count(dsn, "proj_applied") >= 100

    await wait_until(some_applied, timeout=30)
    holder_name = await fetchval(
        dsn, "SELECT worker FROM public.proj_applied ORDER BY seq DESC LIMIT 1"
    )
    holder = next(w for w in candidates if w.name == holder_name)
    holder.kill()
    killed_at = await _count(dsn, "proj_applied")
    assert killed_at < head

    await wait_until(lambda: _applied_all(dsn, head), timeout=60)
    for worker in candidates:
        if worker is not holder:
            assert await worker.stop() == 0, worker.log()

    await _assert_applied_exactly_once(dsn, head)
    rows = await fetch(dsn, "SELECT worker FROM public.proj_applied ORDER BY seq")
    sequence = [row["worker"] for row in rows]
    switches = sum(1 for a, b in itertools.pairwise(sequence) if a != b)
    assert sequence[0] == holder_name
    assert switches == 1  # one holder at a time: the killed one, then its successor
    assert sequence[-1] != holder_name
    assert await checkpoint(dsn, "proj-test") == head
