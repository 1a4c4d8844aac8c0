"""Shared set-up of the examples: find a database, migrate it, define a small domain.

Each example takes the database URL as its first argument, else EVENTUALI_PG_DSN, else it starts
the embedded PostgreSQL (``pip install 'eventuali-pg[embedded]'``).
"""

from __future__ import annotations

import os
import sys

from eventuali_pg import Aggregate, Event, migrate


def database_url() -> str:
    """The DSN to use: argv[1], EVENTUALI_PG_DSN, or the embedded server."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    if os.environ.get("EVENTUALI_PG_DSN"):
        return os.environ["EVENTUALI_PG_DSN"]
    from eventuali_pg import embedded

    return embedded.start()


async def prepared_database() -> str:
    """The DSN, with the event store schema migrated to the newest version."""
    dsn = database_url()
    await migrate(dsn)
    return dsn


class UserRegistered(Event):
    name: str
    email: str


class UserEmailChanged(Event):
    email: str


class UserDeactivated(Event):
    reason: str = ""


class OrderPlaced(Event):
    user_id_ref: str
    total_cents: int


class User(Aggregate):
    name: str = ""
    email: str = ""
    active: bool = False

    def register(self, name: str, email: str) -> None:
        self.apply(UserRegistered(name=name, email=email))

    def change_email(self, email: str) -> None:
        self.apply(UserEmailChanged(email=email))

    def deactivate(self, reason: str = "") -> None:
        self.apply(UserDeactivated(reason=reason))

    def apply_user_registered(self, event: UserRegistered) -> None:
        self.name, self.email, self.active = event.name, event.email, True

    def apply_user_email_changed(self, event: UserEmailChanged) -> None:
        self.email = event.email

    def apply_user_deactivated(self, event: UserDeactivated) -> None:
        self.active = False


class Order(Aggregate):
    user_ref: str = ""
    total_cents: int = 0

    def place(self, user_ref: str, total_cents: int) -> None:
        self.apply(OrderPlaced(user_id_ref=user_ref, total_cents=total_cents))

    def apply_order_placed(self, event: OrderPlaced) -> None:
        self.user_ref, self.total_cents = event.user_id_ref, event.total_cents
