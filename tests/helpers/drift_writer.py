"""A process still running the old code: its ``DriftTicked`` has no field ``n``.

Run as ``python tests/helpers/drift_writer.py DSN AGGREGATE_ID``: saves ``DriftOk``,
``DriftTicked`` (old shape), ``DriftOk`` to one ``Gauge`` aggregate and prints "saved".
"""

from __future__ import annotations

import asyncio
import sys

from eventuali_pg import Aggregate, Event, EventStore


class DriftOk(Event):
    label: str


class DriftTicked(Event):
    note: str


class Gauge(Aggregate):
    def apply_drift_ok(self, event: DriftOk) -> None:
        pass

    def apply_drift_ticked(self, event: DriftTicked) -> None:
        pass


async def main(dsn: str, aggregate_id: str) -> None:
    async with await EventStore.create(dsn, pool_max_size=1) as store:
        gauge = Gauge(id=aggregate_id)
        gauge.apply(DriftOk(label="before"))
        gauge.apply(DriftTicked(note="written by the old code"))
        gauge.apply(DriftOk(label="after"))
        await store.save(gauge)
    print("saved", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
