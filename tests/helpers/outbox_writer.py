"""A separate OS process saving events in its own transactions (the outbox form), half of them
rolled back: ``python tests/helpers/outbox_writer.py DSN NAME COUNT`` prints one JSON line with
the ids of the committed aggregates."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _path in (str(_TESTS.parent), str(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from eventuali_pg import EventStore  # noqa: E402
from helpers.streaming_domain import Ticker  # noqa: E402


class RolledBack(Exception):
    pass


async def main(dsn: str, name: str, count: int) -> None:
    rng = random.Random(name)
    committed: list[str] = []
    async with await EventStore.create(dsn, pool_max_size=2) as store:
        for n in range(count):
            ticker = Ticker(id=f"{name}-{n}")
            for tick in range(rng.randint(1, 3)):
                ticker.tick(tick, writer=name)
            try:
                async with store.transaction() as tx:
                    await tx.connection.execute(
                        "INSERT INTO outbox_orders (id, writer) VALUES ($1, $2)", ticker.id, name
                    )
                    await tx.save(ticker)
                    await asyncio.sleep(rng.random() * 0.01)
                    if rng.random() < 0.5:
                        raise RolledBack
                committed.append(ticker.id)
            except RolledBack:
                pass
    print(json.dumps({"committed": committed}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
