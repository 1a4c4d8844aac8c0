"""The crash-and-retry checker (issue 11 item 5): acknowledged saves survive crashes exactly once.

Writers save continuously (``save``, ``save_all``, and ``store.transaction()`` for a quarter of
the saves), each retrying a save on :class:`DatabaseUnavailableError` until it is
acknowledged (a retried save is idempotent: events already stored are not written again), while
the checker terminates client connections at random (one running a statement first), makes saves
commit and lose their answer (a synchronous standby that never comes holds their commits, and
the waiting connections are terminated), and SIGKILLs the postmaster of an embedded server of
its own, then starts it again on the same data folder, several times. At the end:

* every acknowledged event is stored exactly once, at the position it was acknowledged with,
  and nothing else is stored; no event id appears twice; positions are 1..N with no hole;
* every subscriber (fast ones and capacity-8 slow ones, fed by the writing store and by a store
  that only reads, plus one that joins from position 0 after the first crash) received exactly
  the stored events in global order, and its iteration never ended.

The figures (saves acknowledged, retried, in doubt resolved, crashes survived) are printed.
The normal suite runs a bounded form (2 crashes); the long form, on its own::

    EVENTUALI_PG_CHECKER_CRASHES=50 EVENTUALI_PG_CHECKER_TERMINATIONS=6 \\
        .venv/bin/python -m pytest -m slow -s tests/test_crash_checker.py

``EVENTUALI_PG_CHECKER_SEED`` repeats a run's random choices (the printed seed). No assertion is
on time: every wait is bounded and fails with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from _server import EmbeddedServer, _scratch_root
from helpers.streaming_domain import Collector, Ticker, cancel_all, wait_until

import eventuali_pg
from eventuali_pg import DatabaseUnavailableError, Event, EventStore, EventStreamer, Subscription

pytestmark = pytest.mark.slow


def _setting(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


CRASHES = _setting("EVENTUALI_PG_CHECKER_CRASHES", 2)
TERMINATIONS = _setting("EVENTUALI_PG_CHECKER_TERMINATIONS", 3)  # before each crash
SEED = _setting("EVENTUALI_PG_CHECKER_SEED", random.SystemRandom().randrange(2**32))
WRITERS = 4
SAVES_BETWEEN = 30  # acknowledged saves between two blows: progress, not time
SLOW_CAPACITY = 8
WAIT = 180.0  # bound on any single wait: a failure, never a measurement
CHECKER_APPLICATION = "eventuali_pg_crash_checker"
PHANTOM = "eventuali_pg_checker_phantom_standby"  # a synchronous standby that never connects

STORE_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2.0,
    "heartbeat_interval": 0.5,
    "heartbeat_timeout": 2.0,
    "poll_interval": 0.5,
    "pool_max_size": 6,
}


@dataclass
class Figures:
    """What the checker did and survived."""

    seed: int = SEED
    saves_acknowledged: int = 0
    saves_in_transactions: int = 0  # of which through store.transaction()
    events_acknowledged: int = 0
    saves_retried: int = 0  # saves that needed at least one retry
    retry_attempts: int = 0
    in_doubt_resolved: int = 0  # retries that found the save already stored
    crashes_survived: int = 0
    connections_terminated: int = 0
    in_flight_terminated: int = 0  # of which were running a statement
    answers_lost: int = 0  # of which had committed a save and were waiting to answer
    slow_overflows: int = 0
    slow_catch_ups: int = 0
    listener_reconnects: int = 0
    stored_events: int = 0

    def report(self) -> str:
        return (
            f"crash checker (seed {self.seed}): {self.saves_acknowledged} saves acknowledged "
            f"({self.events_acknowledged} events, {self.saves_in_transactions} saves in "
            f"transactions), {self.saves_retried} retried "
            f"({self.retry_attempts} attempts), {self.in_doubt_resolved} in doubt resolved "
            f"(found already stored), {self.crashes_survived} crashes survived, "
            f"{self.connections_terminated} connections terminated "
            f"({self.in_flight_terminated} mid-statement, {self.answers_lost} after a commit, "
            "before its answer); slow subscribers: "
            f"{self.slow_overflows} overflows, {self.slow_catch_ups} catch-ups; "
            f"{self.listener_reconnects} LISTEN reconnects; {self.stored_events} events stored"
        )


@dataclass
class Checker:
    """The writers, the blows, and the record of every acknowledged save."""

    store: EventStore
    admin_dsn: str
    server: EmbeddedServer
    rng: random.Random
    figures: Figures = field(default_factory=Figures)
    acknowledged: list[Event] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, writer: int) -> None:
        """Save 1-2 of this writer's aggregates (new or not) with 1-4 events each, until stopped;
        only this writer touches them, so a conflict would be a defect."""
        rng = random.Random(self.rng.random())
        mine: list[Ticker] = []
        n = 0
        try:
            while not self.stop.is_set():
                chosen: list[Ticker] = []
                for _ in range(rng.choice((1, 1, 1, 2))):
                    if mine and rng.random() < 0.7:
                        candidate = rng.choice(mine)
                        if candidate not in chosen:
                            chosen.append(candidate)
                            continue
                    fresh = Ticker(id=f"w{writer}-{len(mine)}")
                    mine.append(fresh)
                    chosen.append(fresh)
                for aggregate in chosen:
                    for _ in range(rng.randint(1, 4)):
                        aggregate.tick(n, f"w{writer}")
                        n += 1
                events = [e for a in chosen for e in a.get_uncommitted_events()]
                in_transaction = rng.random() < 0.25
                await self.save_until_acknowledged(chosen, in_transaction=in_transaction)
                self.acknowledged += events
                self.figures.saves_acknowledged += 1
                self.figures.saves_in_transactions += in_transaction
                self.figures.events_acknowledged += len(events)
                await asyncio.sleep(rng.uniform(0, 0.004))
        except BaseException as exc:
            self.failures.append(exc)
            raise

    async def save_until_acknowledged(
        self, aggregates: list[Ticker], *, in_transaction: bool
    ) -> None:
        """Save (plainly, or in a ``store.transaction()``); on DatabaseUnavailableError save the
        same aggregates again, the same way, until it succeeds."""
        attempts = 0
        while True:
            already_stored = False
            try:
                if attempts:
                    # Only this writer saves these aggregates: stored at their new versions
                    # means the attempt whose answer was lost had committed.
                    versions = [await self.store.get_aggregate_version(a.id) for a in aggregates]
                    already_stored = versions == [a.version for a in aggregates]
                if in_transaction:
                    async with self.store.transaction() as tx:
                        await tx.save_all(aggregates)
                elif len(aggregates) == 1:
                    await self.store.save(aggregates[0])
                else:
                    await self.store.save_all(aggregates)
            except DatabaseUnavailableError:
                attempts += 1
                self.figures.retry_attempts += 1
                await asyncio.sleep(min(0.5, 0.01 * 2 ** min(attempts, 6)))
                continue
            assert not any(a.has_uncommitted_events() for a in aggregates)
            if attempts:
                self.figures.saves_retried += 1
            if already_stored:
                self.figures.in_doubt_resolved += 1
            return

    async def progress(self, saves: int, what: str) -> None:
        """Wait for ``saves`` more acknowledged saves (the writers recovered), or fail."""
        target = self.figures.saves_acknowledged + saves

        def done() -> bool:
            if self.failures:
                raise AssertionError(f"a writer failed: {self.failures[0]!r}") from self.failures[0]
            return self.figures.saves_acknowledged >= target

        await wait_until(done, f"{saves} acknowledged saves {what}", timeout=WAIT)

    async def terminate(self) -> None:
        """Terminate a client connection mid-statement if one is caught within a few hundred
        looks (a save whose answer is lost), and one more chosen at random."""
        connection = await self._admin()
        try:
            others = (
                "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND application_name <> $1"
            )
            for _ in range(300):
                rows = await connection.fetch(others, CHECKER_APPLICATION)
                active = [row["pid"] for row in rows if row["state"] == "active"]
                if active:
                    if await connection.fetchval("SELECT pg_terminate_backend($1)", active[0]):
                        self.figures.connections_terminated += 1
                        self.figures.in_flight_terminated += 1
                    break
            rows = await connection.fetch(others, CHECKER_APPLICATION)
            if rows:
                pid = self.rng.choice(rows)["pid"]
                if await connection.fetchval("SELECT pg_terminate_backend($1)", pid):
                    self.figures.connections_terminated += 1
        finally:
            await connection.close()

    async def lose_answers(self) -> None:
        """Make saves commit and lose their answer: with a synchronous standby required (one
        that never comes), a commit is written locally, then waits for the standby; the
        connections caught waiting are terminated, so their callers get a lost connection for
        a save that did commit (what a network cut after the commit does)."""
        connection = await self._admin()
        try:
            await connection.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{PHANTOM}'")
            await connection.execute("SELECT pg_reload_conf()")
            try:
                waiting: list[int] = []

                async def caught() -> bool:
                    waiting[:] = [
                        row["pid"]
                        for row in await connection.fetch(
                            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' "
                            "AND datname = current_database()"
                        )
                    ]
                    return bool(waiting)

                async with asyncio.timeout(WAIT):
                    while not await caught():  # noqa: ASYNC110 - polls the server, bounded
                        await asyncio.sleep(0.005)
                for pid in waiting:
                    if await connection.fetchval("SELECT pg_terminate_backend($1)", pid):
                        self.figures.answers_lost += 1
                        self.figures.connections_terminated += 1
            finally:
                await connection.execute("ALTER SYSTEM RESET synchronous_standby_names")
                await connection.execute("SELECT pg_reload_conf()")
        finally:
            await connection.close()

    async def crash_and_restart(self) -> None:
        """SIGKILL the postmaster, leave it down a moment, start it again (crash recovery)."""
        pid = self.server.pid
        assert pid is not None, "the checker's server is not running"
        self.server.kill()
        await wait_until(lambda: self.server.pid != pid, "the killed postmaster to be gone")
        await asyncio.sleep(self.rng.uniform(0, 0.5))  # saves fail meanwhile
        await asyncio.to_thread(self.server.start)
        self.figures.crashes_survived += 1

    async def _admin(self) -> asyncpg.Connection:
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    return await asyncpg.connect(
                        self.admin_dsn,
                        timeout=2.0,
                        server_settings={"application_name": CHECKER_APPLICATION},
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.sleep(0.1)  # the server is still starting (recovery)


@pytest.fixture(scope="module")
def own_server() -> Iterator[EmbeddedServer]:
    """An embedded server of the checker's own, in a fresh temporary folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="eventuali-pg-checker-", dir=_scratch_root()))
    server = EmbeddedServer(data_dir)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def own_dsn(own_server: EmbeddedServer) -> AsyncIterator[str]:
    if not own_server.running:
        await asyncio.to_thread(own_server.start)
    await eventuali_pg.migrate(own_server.dsn)
    yield own_server.dsn


async def stored_rows(dsn: str) -> tuple[list[asyncpg.Record], int]:
    """Every stored event (position order) and the global sequence's position."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT global_position, event_id, aggregate_id, aggregate_version "
            "FROM eventuali.events ORDER BY global_position"
        )
        head = await connection.fetchval("SELECT position FROM eventuali.global_sequence")
        return rows, int(head)
    finally:
        await connection.close()


def describe_difference(name: str, got: list[Any], expected: list[Any]) -> str:
    first = next((i for i, (g, e) in enumerate(zip(got, expected, strict=False)) if g != e), None)
    return (
        f"{name}: {len(got)} events, {len(expected)} stored; first difference at index "
        f"{first if first is not None else min(len(got), len(expected))}"
    )


async def test_acknowledged_saves_survive_crashes_exactly_once(
    own_server: EmbeddedServer, own_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    fast, slow = EventStreamer(), EventStreamer(capacity=SLOW_CAPACITY)
    seen_fast, seen_slow = EventStreamer(), EventStreamer(capacity=SLOW_CAPACITY)
    async with (
        await EventStore.create(own_dsn, streamer=fast, **STORE_OPTIONS) as store,
        await EventStore.create(own_dsn, streamer=seen_fast, **STORE_OPTIONS) as observer,
    ):
        await store.attach_streamer(slow)
        await observer.attach_streamer(seen_slow)
        collectors = [
            Collector(await fast.subscribe(Subscription(id="fast")), name="fast"),
            Collector(await slow.subscribe(Subscription(id="slow")), name="slow", delay=0.002),
            Collector(await seen_fast.subscribe(Subscription(id="other-fast")), name="other-fast"),
            Collector(
                await seen_slow.subscribe(Subscription(id="other-slow")),
                name="other-slow",
                delay=0.002,
            ),
        ]
        checker = Checker(store, own_dsn, own_server, rng)
        writers = [
            asyncio.create_task(checker.write(k), name=f"writer {k}") for k in range(WRITERS)
        ]
        try:
            for crash in range(CRASHES):
                for blow in range(TERMINATIONS):
                    await checker.progress(SAVES_BETWEEN // 2, f"before termination {blow + 1}")
                    await checker.terminate()
                await checker.progress(SAVES_BETWEEN // 2, f"before losing answers {crash + 1}")
                await checker.lose_answers()
                await checker.progress(SAVES_BETWEEN, f"before crash {crash + 1}")
                await checker.crash_and_restart()
                await checker.progress(SAVES_BETWEEN, f"after crash {crash + 1}")
                if crash == 0:
                    late = await seen_fast.subscribe(Subscription(id="late", from_position=0))
                    collectors.append(Collector(late, name="late from 0"))
        finally:
            checker.stop.set()
            async with asyncio.timeout(WAIT):  # each writer finishes its save in hand
                results = await asyncio.gather(*writers, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"writers failed: {errors!r}"

        rows, head = await stored_rows(own_dsn)
        figures = checker.figures
        figures.stored_events = len(rows)
        positions = [row["global_position"] for row in rows]
        assert positions == list(range(1, len(rows) + 1)), "positions have holes"
        assert head == len(rows), f"global sequence at {head}, {len(rows)} events stored"
        stored = {row["event_id"]: row for row in rows}
        assert len(stored) == len(rows), "an event id is stored twice"

        acknowledged_ids = [event.event_id for event in checker.acknowledged]
        assert len(set(acknowledged_ids)) == len(acknowledged_ids), "an event acknowledged twice"
        lost = [event for event in checker.acknowledged if event.event_id not in stored]
        assert not lost, f"{len(lost)} acknowledged events are not stored: {lost[:3]!r}"
        for event in checker.acknowledged:
            row = stored[event.event_id]
            assert (
                row["global_position"],
                row["aggregate_id"],
                row["aggregate_version"],
            ) == (event.global_position, event.aggregate_id, event.aggregate_version), event
        unacknowledged = set(stored) - set(acknowledged_ids)
        assert not unacknowledged, f"{len(unacknowledged)} stored events were never acknowledged"

        expected = [row["event_id"] for row in rows]
        for collector in collectors:
            await collector.wait_for(len(rows), timeout=WAIT)
            got = [item.event.event_id for item in collector.items]
            assert got == expected, describe_difference(collector.name, got, expected)
            assert collector.positions == positions, collector.name
            assert not collector.task.done(), f"{collector.name}: the iteration ended"
        slow_stats = [slow.stats().receivers[0], seen_slow.stats().receivers[0]]
        figures.slow_overflows = sum(s.overflows for s in slow_stats)
        figures.slow_catch_ups = sum(s.catch_ups for s in slow_stats)
        figures.listener_reconnects = sum(
            s.reconnects for s in (store.stats(), observer.stats()) if s is not None
        )
        with capsys.disabled():
            print(f"\n{figures.report()}")
        await cancel_all(collectors)

        assert figures.crashes_survived == CRASHES
        assert figures.answers_lost > 0 and figures.in_doubt_resolved > 0, (
            "no save committed without its answer: the in-doubt path was not exercised"
        )
        assert figures.slow_overflows > 0, "the slow subscribers never overflowed"
