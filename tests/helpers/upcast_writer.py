"""A process still running the old code: its ``TicketOpened`` is version 1 (field ``title``).

Run as ``python tests/helpers/upcast_writer.py DSN PREFIX COUNT``: saves COUNT tickets and
prints "saved".
"""

from __future__ import annotations

import asyncio
import sys

from eventuali_pg import Aggregate, Event, EventStore


class TicketOpened(Event):
    title: str


class Ticket(Aggregate):
    def apply_ticket_opened(self, event: TicketOpened) -> None:
        pass


async def main(dsn: str, prefix: str, count: int) -> None:
    async with await EventStore.create(dsn, pool_max_size=1) as store:
        for n in range(count):
            ticket = Ticket(id=f"{prefix}-{n}")
            ticket.apply(TicketOpened(title=f"old title {n}"))
            await store.save(ticket)
    print("saved", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
