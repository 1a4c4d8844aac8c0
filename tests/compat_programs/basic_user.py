"""Pattern of upstream's basic examples: the built-in User domain, save, load, rebuild."""

import asyncio
import os

from eventuali_pg import EventStore
from eventuali_pg.aggregate import User
from eventuali_pg.event import UserDeactivated, UserEmailChanged, UserRegistered


async def main() -> None:
    store = await EventStore.create(os.environ["EVENTUALI_PG_DSN"])
    user = User(id="user-basic")
    assert user.is_new() and user.version == 0
    user.apply(UserRegistered(name="John Doe", email="john@example.com"))
    user.change_email("john.doe@company.com")
    assert len(user.get_uncommitted_events()) == 2
    for event in user.get_uncommitted_events():
        assert event.to_json() and event.get_event_type() in {"UserRegistered", "UserEmailChanged"}
    await store.save(user)
    user.mark_events_as_committed()  # upstream's examples call it again after save: harmless
    assert not user.has_uncommitted_events()

    user.deactivate("Account closed by user request")
    await store.save(user)

    loaded = await store.load(User, "user-basic")
    assert loaded is not None and loaded.to_dict() == user.to_dict()
    assert not loaded.is_active and loaded.email == "john.doe@company.com"
    events = await store.load_events("user-basic")
    rebuilt = User.from_events(events)
    assert rebuilt.to_dict() == user.to_dict() and not rebuilt.is_new()
    assert [type(e) for e in events] == [UserRegistered, UserEmailChanged, UserDeactivated]
    assert await store.get_aggregate_version("user-basic") == 3
    assert await store.load(User, "nobody") is None
    assert [e.aggregate_id for e in await store.load_events_by_type("User")] == [
        "user-basic"
    ] * 3
    try:
        await EventStore.create("invalid://bad-connection")
    except Exception as error:  # upstream's examples catch broadly; ours is typed
        assert type(error).__name__ == "UnsupportedDatabaseError"
    await store.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
