"""Pattern of upstream's event versioning example: explicit event_version fields, properties on
events, upcasting old payloads through to_dict/from_dict."""

import asyncio
import os
from typing import Any, Dict, Optional

from eventuali_pg import EventStore
from eventuali_pg.aggregate import Aggregate
from eventuali_pg.event import Event


class CustomerRegisteredV1(Event):
    event_version: int = 1
    name: str
    email: str


class CustomerRegisteredV2(Event):
    event_version: int = 2
    first_name: str
    last_name: str
    email: str
    phone: Optional[str] = None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


def upcast(data: Dict[str, Any]) -> Event:
    if data["event_type"] == "CustomerRegisteredV1":
        first, _, last = data["name"].partition(" ")
        upgraded = {**data, "first_name": first, "last_name": last, "event_version": 2,
                    "event_type": "CustomerRegisteredV2"}
        upgraded.pop("name")
        return CustomerRegisteredV2.from_dict(upgraded)
    return Event.from_dict(data)


class Customer(Aggregate):
    name: str = ""
    email: str = ""

    def apply_customer_registered_v1(self, event: CustomerRegisteredV1) -> None:
        self.name, self.email = event.name, event.email

    def apply_customer_registered_v2(self, event: CustomerRegisteredV2) -> None:
        self.name, self.email = event.full_name, event.email


async def main() -> None:
    store = await EventStore.create(os.environ["EVENTUALI_PG_DSN"])
    old = Customer(id="cust-1")
    old.apply(CustomerRegisteredV1(name="Grace Hopper", email="grace@example.org"))
    await store.save(old)
    [stored] = await store.load_events("cust-1")
    assert stored.event_version == 1
    upgraded = upcast(stored.to_dict())
    assert isinstance(upgraded, CustomerRegisteredV2) and upgraded.full_name == "Grace Hopper"
    migrated = Customer(id="cust-2")
    migrated.apply(CustomerRegisteredV2(**{k: v for k, v in upgraded.to_dict().items()
                                           if k not in {"event_id", "aggregate_id",
                                                        "aggregate_version", "global_position",
                                                        "recorded_at"}}))
    await store.save(migrated)
    loaded = await store.load(Customer, "cust-2")
    assert loaded is not None and loaded.name == "Grace Hopper"
    assert (await store.load_events("cust-2"))[0].event_version == 2
    await store.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
