"""Issue 15, item 2: upstream's example domain (User, UserRegistered, ...) imports from the same
paths, is created on first access only, and never clashes with an application's own classes.

Event types register process-wide, so each scenario runs in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


async def _run(program: str, dsn: str | None = None) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
    }
    if dsn is not None:
        env["EVENTUALI_PG_DSN"] = dsn
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(program),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_example_types_are_created_on_first_access_only() -> None:
    output = await _run(
        """
        import sys
        import eventuali_pg, eventuali_pg.event, eventuali_pg.aggregate
        from eventuali_pg import registered_event_types
        assert "eventuali_pg.examples_domain" not in sys.modules
        assert "UserRegistered" not in registered_event_types()
        from eventuali_pg.event import UserRegistered, DomainEvent
        from eventuali_pg.aggregate import User
        assert registered_event_types()["UserRegistered"] is UserRegistered
        assert issubclass(UserRegistered, DomainEvent) and UserRegistered.__example_type__
        print("ok")
        """
    )
    assert output.strip() == "ok"


async def test_an_application_class_defined_first_wins() -> None:
    await _run(
        """
        from eventuali_pg import Event, event_class_for

        class UserRegistered(Event):  # the application's own, with other fields
            username: str

        from eventuali_pg.event import UserRegistered as Example
        assert Example is not UserRegistered
        assert event_class_for("UserRegistered") is UserRegistered
        """
    )


async def test_an_application_class_defined_after_the_example_takes_the_name() -> None:
    await _run(
        """
        from eventuali_pg.event import UserRegistered as Example
        from eventuali_pg import Event, event_class_for
        assert event_class_for("UserRegistered") is Example

        class UserRegistered(Event):  # no EventTypeConflictError
            username: str

        assert event_class_for("UserRegistered") is UserRegistered

        class UserDeactivated(Event, event_type="UserDeactivated"):
            why: str = ""

        from eventuali_pg.event import UserDeactivated as ExampleDeactivated
        assert event_class_for("UserDeactivated") is UserDeactivated
        assert ExampleDeactivated is not UserDeactivated
        """
    )


async def test_two_application_classes_still_conflict() -> None:
    await _run(
        """
        from eventuali_pg import Event, EventTypeConflictError
        from eventuali_pg.event import UserRegistered as Example

        class UserRegistered(Event):
            username: str

        try:
            class Other(Event, event_type="UserRegistered"):
                pass
        except EventTypeConflictError:
            print("conflict")
        else:
            raise SystemExit("two application classes may not share a type")
        """
    )


async def test_application_subclasses_of_domain_event_register_normally() -> None:
    await _run(
        """
        from eventuali_pg import event_class_for
        from eventuali_pg.event import DomainEvent, SystemEvent

        class OrderPlaced(DomainEvent):
            total: float

        class SnapshotTaken(SystemEvent):
            pass

        assert event_class_for("OrderPlaced") is OrderPlaced
        assert not OrderPlaced.__example_type__
        assert OrderPlaced(total=1.0).event_type == "OrderPlaced"
        """
    )


async def test_the_example_user_round_trips_through_the_store(dsn: str) -> None:
    output = await _run(
        """
        import asyncio
        from eventuali_pg import EventStore
        from eventuali_pg.aggregate import User
        from eventuali_pg.event import UserRegistered, UserEmailChanged, UserDeactivated

        async def main():
            store = await EventStore.create()
            user = User(id="example-user")
            assert user.is_new()
            user.apply(UserRegistered(name="Ada", email="ada@example.org"))
            user.change_email("ada@example.com")
            user.change_email("ada@example.com")  # unchanged: no event
            user.deactivate("done")
            user.deactivate("again")  # already inactive: no event
            try:
                user.change_email("not-an-email")
            except ValueError:
                pass
            await store.save(user)
            loaded = await store.load(User, "example-user")
            events = await store.load_events("example-user")
            assert [type(e) for e in events] == [UserRegistered, UserEmailChanged,
                                                 UserDeactivated]
            assert loaded.to_dict() == user.to_dict() == {
                "id": "example-user", "version": 3, "name": "Ada",
                "email": "ada@example.com", "is_active": False}
            assert not loaded.is_new()
            await store.close()
            print("ok")

        asyncio.run(main())
        """,
        dsn,
    )
    assert output.strip() == "ok"
