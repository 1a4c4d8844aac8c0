"""A separate OS process that appends Ticked events, for the cross-process streaming tests.

Run as ``python tests/helpers/writer_process.py DSN --saves N --aggregates A --events E``
(``--schema S`` for a store schema other than ``eventuali``): it
opens its own EventStore (no streamer), makes ``N`` saves of ``A`` new Ticker aggregates holding
``E`` events each (``save_all``, one transaction per save), then prints one JSON line:
``{"aggregate_ids": [...], "events": total, "last_position": p}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _path in (str(_TESTS.parent), str(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from eventuali_pg import EventStore  # noqa: E402
from helpers.streaming_domain import tickers  # noqa: E402


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn")
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--aggregates", type=int, default=2)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--name", default="subprocess")
    parser.add_argument("--schema", default="eventuali")
    args = parser.parse_args(argv)

    aggregate_ids: list[str] = []
    last_position = 0
    async with await EventStore.create(
        args.dsn, schema=args.schema, pool_max_size=2
    ) as store:
        n = 0
        for _ in range(args.saves):
            batch = tickers(args.aggregates, args.events, writer=args.name, start=n)
            n += args.aggregates * args.events
            events = [event for ticker in batch for event in ticker.get_uncommitted_events()]
            await store.save_all(batch)
            aggregate_ids += [ticker.id for ticker in batch]
            last_position = max(last_position, *(e.global_position or 0 for e in events))
    print(
        json.dumps({"aggregate_ids": aggregate_ids, "events": n, "last_position": last_position}),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
