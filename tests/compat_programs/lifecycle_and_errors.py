"""Pattern of upstream's lifecycle and error handling examples: ClassVar states, a custom
__init__, domain exceptions, optimistic concurrency caught under upstream's name."""

import asyncio
import os
from typing import ClassVar

from eventuali_pg import EventStore
from eventuali_pg.aggregate import Aggregate
from eventuali_pg.event import Event
from eventuali_pg.exceptions import EventualiError, OptimisticConcurrencyError


class InsufficientFundsError(Exception):
    pass


class AccountOpened(Event):
    account_holder: str
    initial_deposit: float


class MoneyDeposited(Event):
    amount: float
    reference: str


class MoneyWithdrawn(Event):
    amount: float
    reference: str


class BankAccount(Aggregate):
    OPEN: ClassVar[str] = "open"
    account_holder: str = ""
    balance: float = 0.0
    status: str = ""
    history: list = []

    def __init__(self, **data):
        super().__init__(**data)
        if "history" not in data:
            self.history = []

    def open_account(self, holder: str, deposit: float) -> None:
        if not holder.strip():
            raise ValueError("Account holder name is required")
        self.apply(AccountOpened(account_holder=holder, initial_deposit=deposit))

    def deposit(self, amount: float, reference: str = "") -> None:
        self.apply(MoneyDeposited(amount=amount, reference=reference))

    def withdraw(self, amount: float, reference: str = "") -> None:
        if amount > self.balance:
            raise InsufficientFundsError(f"balance {self.balance}, requested {amount}")
        self.apply(MoneyWithdrawn(amount=amount, reference=reference))

    def apply_account_opened(self, event: AccountOpened) -> None:
        self.account_holder = event.account_holder
        self.balance = event.initial_deposit
        self.status = self.OPEN

    def apply_money_deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount
        self.history.append(event.reference)

    def apply_money_withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount
        self.history.append(event.reference)


async def main() -> None:
    store = await EventStore.create(os.environ["EVENTUALI_PG_DSN"])
    account = BankAccount(id="acc-1")
    try:
        account.open_account("  ", 10)
    except ValueError:
        pass
    account.open_account("Ada", 100.0)
    account.deposit(50.0, "dep-1")
    try:
        account.withdraw(500.0)
    except InsufficientFundsError:
        pass
    await store.save(account)

    first = await store.load(BankAccount, "acc-1")
    second = await store.load(BankAccount, "acc-1")
    assert first is not None and second is not None and first.balance == 150.0
    first.withdraw(20.0, "w-1")
    second.withdraw(30.0, "w-2")
    await store.save(first)
    try:
        await store.save(second)
        raise SystemExit("the second save should have lost the race")
    except OptimisticConcurrencyError as error:
        assert isinstance(error, EventualiError)
    reloaded = await store.load(BankAccount, "acc-1")
    assert reloaded is not None and reloaded.balance == 130.0
    assert reloaded.history == ["dep-1", "w-1"] and BankAccount().history == []
    await store.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
