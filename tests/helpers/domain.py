"""Event and aggregate classes shared by the store tests.

Event classes register globally by type name, so each one is defined here once and imported.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from eventuali_pg import Aggregate, Event

# -- events ------------------------------------------------------------------------------------


class AccountOpened(Event):
    owner: str
    currency: str = "EUR"


class MoneyDeposited(Event):
    amount: Decimal


class MoneyWithdrawn(Event):
    amount: Decimal


class Address(BaseModel):
    street: str
    city: str
    tags: list[str] = []


class Customer(BaseModel):
    name: str
    born: datetime
    addresses: list[Address]
    primary: Address | None = None


class EverythingHappened(Event):
    """An event with every kind of payload value the store promises to keep."""

    when: datetime
    reference: uuid.UUID
    price: Decimal
    ratio: float
    count: int
    flag: bool
    nothing: str | None
    text: str
    customer: Customer
    numbers: list[int]
    nested: dict[str, Any]
    mapping: dict[str, Decimal]


class Incremented(Event):
    by: int = 1


class Renamed(Event, event_type="counter.renamed"):
    name: str


class Opaque(Event):
    """Holds anything: used to feed values JSON cannot store."""

    value: Any = None


class Blob(Event):
    data: str


class Measured(Event):
    reading: float


# -- aggregates --------------------------------------------------------------------------------


class BankAccount(Aggregate):
    owner: str = ""
    currency: str = ""
    balance: Decimal = Decimal(0)

    def open(self, owner: str, **envelope: Any) -> AccountOpened:
        return self.apply(AccountOpened(owner=owner, **envelope))  # type: ignore[return-value]

    def deposit(self, amount: Decimal | str | int, **envelope: Any) -> MoneyDeposited:
        return self.apply(MoneyDeposited(amount=Decimal(amount), **envelope))  # type: ignore[return-value]

    def withdraw(self, amount: Decimal | str | int) -> MoneyWithdrawn:
        return self.apply(MoneyWithdrawn(amount=Decimal(amount)))  # type: ignore[return-value]

    def apply_account_opened(self, event: AccountOpened) -> None:
        self.owner = event.owner
        self.currency = event.currency

    def apply_money_deposited(self, event: MoneyDeposited) -> None:
        self.balance += event.amount

    def apply_money_withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount


class Counter(Aggregate):
    value: int = 0
    name: str = ""

    def increment(self, by: int = 1) -> Incremented:
        return self.apply(Incremented(by=by))  # type: ignore[return-value]

    def rename(self, name: str) -> Renamed:
        return self.apply(Renamed(name=name))  # type: ignore[return-value]

    def apply_incremented(self, event: Incremented) -> None:
        self.value += event.by

    def apply_counter_renamed(self, event: Renamed) -> None:
        self.name = event.name


class Warehouse(Aggregate):
    """Aggregate type stored under another name than the class name."""

    aggregate_type = "inventory.Warehouse"

    value: int = 0

    def apply_incremented(self, event: Incremented) -> None:
        self.value += event.by


class Bucket(Aggregate):
    """Accepts every test event type that is not tied to a domain aggregate."""

    items: list[Any] = Field(default_factory=list)

    def apply_everything_happened(self, event: EverythingHappened) -> None:
        self.items.append(event.text)

    def apply_opaque(self, event: Opaque) -> None:
        self.items.append("opaque")

    def apply_blob(self, event: Blob) -> None:
        self.items.append(len(event.data))

    def apply_measured(self, event: Measured) -> None:
        self.items.append(event.reading)

    def apply_ghost_happened(self, event: Event) -> None:
        self.items.append(dict(event.model_extra or {}))


class User(Aggregate):
    name: str = ""
    email: str = ""
