"""Writing events for the CLI tests through the library (the CLI only reads them)."""

from __future__ import annotations

from decimal import Decimal

from eventuali_pg import EventStore
from helpers.domain import BankAccount, Counter


async def write_accounts(dsn: str, owners: list[str], deposits: int = 2) -> list[BankAccount]:
    """Open one account per owner (AccountOpened) and deposit ``deposits`` times into each."""
    async with await EventStore.create(dsn) as store:
        accounts = []
        for owner in owners:
            account = BankAccount(id=f"acc-{owner}")
            account.open(owner)
            await store.save(account)
            accounts.append(account)
        for round_ in range(deposits):
            for account in accounts:
                account.deposit(Decimal(10 + round_))
                await store.save(account)
        return accounts


async def bump(dsn: str, counter_id: str, times: int) -> None:
    """Save ``times`` Incremented events on counter ``counter_id`` (one save each)."""
    async with await EventStore.create(dsn) as store:
        counter = await store.load(Counter, counter_id) or Counter(id=counter_id)
        for _ in range(times):
            counter.increment()
            await store.save(counter)


async def head(dsn: str) -> int:
    """The store's head position."""
    async with await EventStore.create(dsn) as store:
        return await store.get_global_position()
