"""The cost of personal fields (AES-256-GCM per field, a key per subject) on append and replay.

    python benchmarks/erasure.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Two event classes of the same shape (name, email, plan), one with ``name`` and ``email``
personal. Appends: ``save_all`` of 100 one-event aggregates at a time, sequentially, for new
subjects (the first save of each subject creates its key: one more round trip per save) and
for subjects whose keys are cached (a second event each), against the same saves without
personal fields; three interleaved rounds of ``--events`` each, the best of each kind.
Replay: ``iter_events_from_position`` over each kind (pages of 1,000, as many events of each),
with the key cache warm and cold (one key query per page), best of three; and decoding alone
on fetched rows, in CPU time (best of 5). A database of
its own per run; keys trusted for the whole run (``key_cache_ttl``). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

import eventuali_pg  # noqa: E402
from benchmarks._common import with_database  # noqa: E402
from eventuali_pg import Aggregate, Event, EventStore, Personal  # noqa: E402
from eventuali_pg.codec import records_to_events  # noqa: E402
from eventuali_pg.store.sql import EVENT_COLUMNS  # noqa: E402

BATCH = 100
ROUNDS = 3


class PlainSignedUp(Event):
    name: str
    email: str
    plan: str


class PersonalSignedUp(Event):
    name: Annotated[str, Personal()]
    email: Annotated[str, Personal()]
    plan: str


class Member(Aggregate):
    name: str = ""

    def apply_plain_signed_up(self, event: PlainSignedUp) -> None:
        self.name = event.name

    def apply_personal_signed_up(self, event: PersonalSignedUp) -> None:
        self.name = event.name


def members(prefix: str, count: int, personal: bool, version: int = 0) -> list[Member]:
    cls = PersonalSignedUp if personal else PlainSignedUp
    result = []
    for i in range(count):
        member = Member(id=f"{prefix}-{i}", version=version)
        member.apply(cls(name=f"Member Number {i}", email=f"member{i}@example.com", plan="pro"))
        result.append(member)
    return result


async def append_rate(store: EventStore, aggregates: list[Member]) -> float:
    started = time.perf_counter()
    for start in range(0, len(aggregates), BATCH):
        await store.save_all(aggregates[start : start + BATCH])
    return len(aggregates) / (time.perf_counter() - started)


async def replay_seconds(
    store: EventStore, event_type: str, before: Callable[[], None] | None = None
) -> tuple[int, float]:
    if before is not None:
        before()
    started = time.perf_counter()
    count = 0
    async for _event in store.iter_events_from_position(0, event_types=event_type):
        count += 1
    return count, time.perf_counter() - started


async def decode_rate(store: EventStore, dsn: str, event_type: str) -> float:
    """Events decoded per second of CPU time (best of 5), keys known."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM eventuali.events WHERE event_type = $1 "
            "ORDER BY global_position",
            event_type,
        )
    finally:
        await conn.close()
    lookup = store.keys.lookup()
    records_to_events(rows, lookup)
    if lookup.missing:
        await store.keys.fetch(lookup)
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        records_to_events(rows, lookup)
        best = min(best, time.process_time() - started)
    return len(rows) / best


def ratio(value: float, base: float) -> str:
    return f"{value:,.0f} events/s ({value / base:.2f}x)"


async def main(server_dsn: str, count: int) -> None:
    name = f"erasure_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(server_dsn, name)
    best: dict[str, float] = {}

    def keep(label: str, rate: float) -> None:
        best[label] = max(best.get(label, 0.0), rate)

    try:
        await eventuali_pg.migrate(dsn)
        async with await EventStore.create(
            dsn, key_cache_size=ROUNDS * count, key_cache_ttl=3600
        ) as store:
            for run in range(ROUNDS):  # interleaved, best of each: the machine is shared
                keep("plain new", await append_rate(store, members(f"p{run}", count, False)))
                keep("personal new", await append_rate(store, members(f"s{run}", count, True)))
                keep(
                    "plain known",
                    await append_rate(store, members(f"p{run}", count, False, version=1)),
                )
                keep(
                    "personal known",
                    await append_rate(store, members(f"s{run}", count, True, version=1)),
                )
            for _ in range(ROUNDS):  # equal numbers of each kind
                for label, event_type, before in (
                    ("replay plain", "PlainSignedUp", None),
                    ("replay warm", "PersonalSignedUp", None),
                    ("replay cold", "PersonalSignedUp", store.keys._cache.clear),
                ):
                    events, seconds = await replay_seconds(store, event_type, before)
                    keep(label, events / seconds)
            keep("decode plain", await decode_rate(store, dsn, "PlainSignedUp"))
            keep("decode personal", await decode_rate(store, dsn, "PersonalSignedUp"))
            store.keys._cache.clear()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    rows = [
        (
            "append, no personal fields, first event of an aggregate",
            f"{best['plain new']:,.0f} events/s",
        ),
        (
            "append, 2 personal fields, new subjects (creates keys)",
            ratio(best["personal new"], best["plain new"]),
        ),
        ("append, no personal fields, second event", f"{best['plain known']:,.0f} events/s"),
        (
            "append, 2 personal fields, keys cached",
            ratio(best["personal known"], best["plain known"]),
        ),
        ("replay, no personal fields", f"{best['replay plain']:,.0f} events/s"),
        (
            "replay, 2 personal fields, keys cached",
            ratio(best["replay warm"], best["replay plain"]),
        ),
        (
            "replay, 2 personal fields, cache cold (a key query per page)",
            ratio(best["replay cold"], best["replay plain"]),
        ),
        ("decode only (CPU), no personal fields", f"{best['decode plain']:,.0f} events/s"),
        (
            "decode only (CPU), 2 personal fields",
            ratio(best["decode personal"], best["decode plain"]),
        ),
    ]
    print(f"$ python benchmarks/erasure.py --dsn {server_dsn} --events {count}")
    print("| figure | value |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.dsn, arguments.events))
