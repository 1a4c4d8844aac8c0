"""Issue 19, item 4: the rough edges a newcomer building a web service hit, each now a right
answer or a typed error that says what to do."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.cli_run import cli_env, run_cli
from helpers.domain import BankAccount, Counter

import eventuali_pg
from eventuali_pg import (
    AggregateTypeMismatchError,
    EventStore,
    EventStreamer,
    InvalidInputError,
    PositionBeyondHeadError,
    StreamerClosedError,
    Subscription,
    event_context,
    event_to_json,
    event_to_record,
    migrate,
)
from eventuali_pg._dsn import resolve_dsn, strip_driver
from eventuali_pg.errors import ConfigurationError
from eventuali_pg.records import RECORD_KEYS


def _sqlalchemy_style(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


# -- SQLAlchemy-style URLs ------------------------------------------------------------------------


def test_a_driver_in_the_url_is_dropped() -> None:
    assert strip_driver("postgresql+asyncpg://u:p@h:5/db") == "postgresql://u:p@h:5/db"
    assert strip_driver("postgres+psycopg://h/db?x=1") == "postgresql://h/db?x=1"
    assert strip_driver("postgresql://h/db") == "postgresql://h/db"
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL"):
        strip_driver("mysql+aiomysql://h/db")


def test_database_url_with_a_driver_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTUALI_PG_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app@db:5432/shop")
    assert resolve_dsn(None) == "postgresql://app@db:5432/shop"


async def test_migrate_and_create_take_a_sqlalchemy_url(dsn: str) -> None:
    url = _sqlalchemy_style(dsn)
    await migrate(url)
    async with await EventStore.create(url) as store:
        account = BankAccount(id="acc-url")
        account.open("ada")
        assert await store.save(account) == 1
        assert store.dsn == dsn


# -- load() of an id of another aggregate type ----------------------------------------------------


async def test_loading_another_types_id_raises_a_typed_error(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        account = BankAccount(id="shared-id")
        account.open("ada")
        await store.save(account)
        mismatch = "is a 'BankAccount', not a 'Counter'"
        with pytest.raises(AggregateTypeMismatchError, match=mismatch) as info:
            await store.load(Counter, "shared-id")
        assert (info.value.expected, info.value.actual) == ("Counter", "BankAccount")
        assert isinstance(info.value, LookupError)
        assert await store.load(Counter, "no-such-id") is None
        loaded = await store.load(BankAccount, "shared-id")
        assert loaded is not None and loaded.owner == "ada"


# -- save() returns the position ------------------------------------------------------------------


async def test_save_returns_the_last_global_position(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        first = Counter(id="c-1")
        first.increment()
        first.increment()
        assert await store.save(first) == 2
        assert await store.save(first) is None  # nothing uncommitted
        a, b = Counter(id="c-2"), Counter(id="c-3")
        a.increment()
        b.increment()
        assert await store.save_all([a, b]) == 4
        assert [e.global_position for e in await store.load_events("c-3")] == [4]


# -- event_context ---------------------------------------------------------------------------------


async def test_event_context_stamps_ids_on_saved_events(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        account = BankAccount(id="acc-ctx")
        account.open("ada")
        account.deposit("5", correlation_id="kept", user_id="kept-user")
        with event_context(correlation_id="req-1", user_id="u-1"):
            with event_context(causation_id="cmd-7"):
                await store.save(account)
            other = Counter(id="c-ctx")
            other.increment()
            # a task started inside the context carries it
            await asyncio.create_task(store.save(other))
        outside = Counter(id="c-out")
        outside.increment()
        await store.save(outside)
        opened, deposited = await store.load_events("acc-ctx")
        assert (opened.correlation_id, opened.causation_id, opened.user_id) == (
            "req-1",
            "cmd-7",
            "u-1",
        )
        assert (deposited.correlation_id, deposited.causation_id, deposited.user_id) == (
            "kept",
            "cmd-7",
            "kept-user",
        )
        (counted,) = await store.load_events("c-ctx")
        assert (counted.correlation_id, counted.causation_id) == ("req-1", None)
        (plain,) = await store.load_events("c-out")
        assert (plain.correlation_id, plain.causation_id, plain.user_id) == (None, None, None)
    with pytest.raises(InvalidInputError), event_context(user_id=""):
        pass


# -- subscriptions: from_position beyond the head, or given twice ----------------------------------


async def test_from_position_beyond_the_head_is_refused(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        counter = Counter(id="c-head")
        counter.increment()
        await store.save(counter)
        with pytest.raises(PositionBeyondHeadError, match="the store's head is 1") as info:
            await streamer.subscribe(Subscription(from_position=5))
        assert (info.value.position, info.value.head) == (5, 1)
        assert streamer.subscription_ids == []
        receiver = await streamer.subscribe(Subscription(), from_position=1)  # the head: fine
        await receiver.close()


async def test_from_position_given_twice_must_agree(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer):
        with pytest.raises(InvalidInputError, match="give the starting position in one place"):
            await streamer.subscribe(Subscription(from_position=5), from_position=10)
        receiver = await streamer.subscribe(Subscription(from_position=0), from_position=0)
        await receiver.close()


# -- streamer.close() ends every stream at once ----------------------------------------------------


async def test_streamer_close_ends_every_receiver(dsn: str) -> None:
    streamer = EventStreamer()
    async with await EventStore.create(dsn, streamer=streamer) as store:
        receivers = [await streamer.subscribe(Subscription()) for _ in range(3)]
        consumers = [asyncio.create_task(_drain(r)) for r in receivers]
        await asyncio.sleep(0)
        await streamer.close()
        async with asyncio.timeout(10):  # hang detector
            counts = await asyncio.gather(*consumers)
        assert counts == [0, 0, 0]
        assert streamer.closed and streamer.subscription_ids == []
        with pytest.raises(StreamerClosedError, match="create a new EventStreamer"):
            await streamer.subscribe(Subscription())
        counter = Counter(id="c-after-close")
        counter.increment()
        assert await store.save(counter) == 1  # the store is still open
        fresh = EventStreamer()
        await store.attach_streamer(fresh)
        receiver = await fresh.subscribe(Subscription(from_position=0))
        assert (await receiver.recv(timeout=10)).global_position == 1
        await receiver.close()


async def _drain(receiver: eventuali_pg.EventStreamReceiver) -> int:
    return len([item async for item in receiver])


# -- the JSON shape --------------------------------------------------------------------------------


async def test_event_to_json_is_the_line_of_tail_json(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        account = BankAccount(id="acc-json")
        account.open("zoë")
        account.deposit("12.50", correlation_id="corr")
        await store.save(account)
        stored = await store.load_events("acc-json")
    result = await run_cli(
        "tail", "--json", "--from", "0", "--limit", "2", env=cli_env(EVENTUALI_PG_DSN=dsn)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [event_to_json(event) for event in stored]
    record = event_to_record(stored[1])
    assert tuple(record) == RECORD_KEYS
    assert record["payload"] == {"amount": "12.50"} and record["correlation_id"] == "corr"


# -- a module run as __main__ and imported again ---------------------------------------------------


async def test_double_import_of_main_is_named(tmp_path: Path) -> None:
    (tmp_path / "shopapp.py").write_text(
        textwrap.dedent(
            """
            from eventuali_pg import Event

            class OrderPlaced(Event):
                amount: int

            if __name__ == "__main__":
                import shopapp  # what `uvicorn.run("shopapp:app")` does
            """
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "shopapp.py",
        cwd=tmp_path,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _out, err = await process.communicate()
    text = err.decode()
    assert process.returncode == 1
    assert "EventTypeConflictError" in text
    assert "loaded twice" in text and "shopapp.py" in text and "'__main__'" in text
