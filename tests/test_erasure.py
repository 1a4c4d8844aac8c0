"""Erasure that keeps positions (issue 11 item 4): personal fields stored encrypted with a key
per subject; ``store.forget`` destroys the key and every read path gives the fields erased,
with positions, checkpoints and the rest of the payload untouched."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import asyncpg
import pytest
from helpers.cli_run import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from eventuali_pg import (
    ERASED,
    Aggregate,
    Event,
    EventStore,
    EventStreamer,
    InvalidInputError,
    Personal,
    Projection,
    SubjectForgotten,
    SubjectForgottenError,
    Subscription,
    TransactionalProjection,
)
from eventuali_pg.models import _registry
from eventuali_pg.projections import ProjectionRunner

WAIT = 60.0


class ErAddress(BaseModel):
    street: str
    city: str


class ErPersonRegistered(Event):
    name: Annotated[str, Personal()]
    email: Annotated[str | None, Personal()] = None
    age: Annotated[int | None, Personal()] = None
    address: Annotated[ErAddress | None, Personal()] = None
    tags: Annotated[list[str] | None, Personal()] = None
    plan: str = "free"


class ErPersonRenamed(Event):
    name: Annotated[str, Personal()]


class ErPlanChanged(Event):
    plan: str


class ErPerson(Aggregate, snapshot_every=2):
    name: str = ""
    plan: str = ""

    def register(self, name: str, email: str | None = None, plan: str = "free") -> None:
        self.apply(ErPersonRegistered(name=name, email=email, plan=plan))

    def apply_er_person_registered(self, event: ErPersonRegistered) -> None:
        self.name, self.plan = event.name, event.plan

    def apply_er_person_renamed(self, event: ErPersonRenamed) -> None:
        self.name = event.name

    def apply_er_plan_changed(self, event: ErPlanChanged) -> None:
        self.plan = event.plan


class ErOrderPlaced(Event, personal=("ship_to",), personal_subject="customer_id"):
    customer_id: str
    ship_to: str
    total: int


class ErOrder(Aggregate, snapshot_every=1):
    customer_id: str = ""
    ship_to: str = ""

    def apply_er_order_placed(self, event: ErOrderPlaced) -> None:
        self.customer_id, self.ship_to = event.customer_id, event.ship_to


async def _raw_payloads(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT payload::text AS p FROM eventuali.events ORDER BY global_position"
        )
    finally:
        await conn.close()
    return [row["p"] for row in rows]


async def _fetchval(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def _people(store: EventStore) -> None:
    ann = ErPerson(id="ann")
    ann.register("Ann Smith", "ann@example.com", plan="pro")
    ann.apply(ErPlanChanged(plan="team"))
    bob = ErPerson(id="bob")
    bob.register("Bob Jones", "bob@example.com")
    await store.save_all([ann, bob])


# -- storing --------------------------------------------------------------------------------


async def test_personal_fields_are_stored_encrypted_and_load_back(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await _people(store)
        raw = await _raw_payloads(dsn)
        assert all("Ann Smith" not in p and "ann@example.com" not in p for p in raw)
        assert '"plan": "pro"' in raw[0] and '"$personal"' in raw[0]
        keys = await _fetchval(dsn, "SELECT count(*) FROM eventuali.subject_keys")
        assert keys == 2
        ann = await store.load(ErPerson, "ann")
        assert ann is not None and (ann.name, ann.plan, ann.version) == ("Ann Smith", "team", 2)
    # A second store (another process: empty cache) decrypts too.
    async with await EventStore.create(dsn) as other:
        events = await other.load_events("ann")
        assert events[0].name == "Ann Smith" and events[0].erased_fields == frozenset()


@pytest.mark.parametrize(
    "value",
    ["", "Zoë ☃ 𝄞 עברית e\u0301", "x" * 200_000, 'quotes " and \\ backslash'],
    ids=["empty", "unicode", "long", "escapes"],
)
async def test_values_at_the_limits_round_trip(dsn: str, value: str) -> None:
    async with await EventStore.create(dsn) as store:
        person = ErPerson(id="p-1")
        person.apply(
            ErPersonRegistered(
                name=value,
                email=None,
                age=0,
                address=ErAddress(street=value[:50], city="Zürich"),
                tags=[value[:10], ""],
            )
        )
        await store.save(person)
        store.keys.evict("p-1")
        (event,) = await store.load_events("p-1")
        assert event.name == value and event.email is None and event.age == 0
        assert event.address == ErAddress(street=value[:50], city="Zürich")
        assert event.tags == [value[:10], ""]
        if value:
            assert all(value[:50] not in p for p in await _raw_payloads(dsn))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    age=st.none() | st.integers(min_value=-(2**63), max_value=2**63),
)
async def test_any_text_round_trips(dsn: str, name: str, age: int | None) -> None:
    async with await EventStore.create(dsn, key_cache_size=1) as store:
        person = ErPerson(id=f"h-{abs(hash((name, age)))}")
        person.apply(ErPersonRegistered(name=name, age=age))
        await store.save(person)
        store.keys.evict(person.id)
        (event,) = await store.load_events(person.id)
        assert (event.name, event.age) == (name, age)


def test_declarations_that_cannot_be_erased_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="no erased form"):

        class Aged(Event):
            age: Annotated[int, Personal()]

    with pytest.raises(InvalidInputError, match="itself personal"):

        class Circular(Event, personal=("a", "b"), personal_subject="a"):
            a: str
            b: str

    with pytest.raises(InvalidInputError, match="not a payload field"):

        class Nowhere(Event):
            x: Annotated[str, Personal(subject="missing")]

    with pytest.raises(InvalidInputError, match="not fields"):

        class Unknown(Event, personal=("nope",)):
            x: str


async def test_a_subject_must_be_a_non_empty_string(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        order = ErOrder(id="o-0")
        order.apply(ErOrderPlaced(customer_id="", ship_to="x", total=1))
        with pytest.raises(InvalidInputError, match="subject"):
            await store.save(order)
        assert await store.get_global_position() == 0


# -- forgetting ---------------------------------------------------------------------------------


async def test_forget_erases_on_load_and_reads_by_position_and_keeps_positions(
    dsn: str,
) -> None:
    async with await EventStore.create(dsn) as store:
        await _people(store)
        before = [(e.global_position, e.event_id) for e in await store.load_events_from_position(0)]
        position = await store.forget("ann")
        assert position == 4
        events = await store.load_events_from_position(0)
        assert [(e.global_position, e.event_id) for e in events[:3]] == before
        ann_registered, ann_plan, bob_registered, forgotten = events
        assert ann_registered.name == ERASED and ann_registered.email == ERASED
        assert ann_registered.age is None and ann_registered.plan == "pro"
        assert ann_registered.erased_fields == {"name", "email", "age", "address", "tags"}
        assert ann_plan.plan == "team" and ann_plan.erased_fields == frozenset()
        assert bob_registered.name == "Bob Jones" and bob_registered.erased_fields == frozenset()
        assert isinstance(forgotten, SubjectForgotten) and forgotten.subject_id == "ann"
        loaded = await store.load(ErPerson, "ann")
        assert loaded is not None and (loaded.name, loaded.plan) == (ERASED, "team")
        paged = [e async for e in store.iter_events_from_position(0, page_size=1)]
        assert [e.global_position for e in paged] == [1, 2, 3, 4]
        assert paged[0].name == ERASED and paged[2].name == "Bob Jones"
        assert await store.forget("ann") is None  # already forgotten: nothing appended
        assert await store.get_global_position() == 4
    async with await EventStore.create(dsn) as other:  # a process that never had the key
        (event, _) = await other.load_events("ann")
        assert event.name == ERASED


async def test_saving_personal_data_of_a_forgotten_subject_is_refused(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await _people(store)
        await store.forget("ann")
        ann = await store.load(ErPerson, "ann")
        assert ann is not None
        ann.apply(ErPersonRenamed(name="Ann Again"))
        with pytest.raises(SubjectForgottenError) as refused:
            await store.save(ann)
        assert refused.value.subject_id == "ann"
        assert "new_subject_key" in str(refused.value)
        assert await store.get_global_position() == 4
        ann.mark_events_as_committed()
        # Events without personal fields still go in.
        fresh = await store.load(ErPerson, "ann")
        assert fresh is not None
        fresh.apply(ErPlanChanged(plan="free"))
        await store.save(fresh)
        # Asking for a new key explicitly lets the subject come back; old events stay erased.
        assert await store.new_subject_key("ann") == 2
        fresh.apply(ErPersonRenamed(name="Ann Again"))
        await store.save(fresh)
        events = await store.load_events("ann")
        assert [getattr(e, "name", None) for e in events] == [ERASED, None, None, "Ann Again"]
        with pytest.raises(InvalidInputError, match="not forgotten"):
            await store.new_subject_key("ann")


async def test_a_stale_cached_key_cannot_write_after_another_process_forgot(dsn: str) -> None:
    async with (
        await EventStore.create(dsn) as a,
        await EventStore.create(dsn, key_cache_ttl=0.000001) as fresh_reader,
        await EventStore.create(dsn) as b,
    ):
        await _people(a)
        assert (await a.load_events("ann"))[0].name == "Ann Smith"  # a has the key cached
        await fresh_reader.load_events("ann")
        await b.forget("ann")
        # a's cache still holds the key: reads within key_cache_ttl decrypt (the documented
        # window); a cache that expired reads the tombstone.
        assert (await a.load_events("ann"))[0].name == "Ann Smith"
        assert (await fresh_reader.load_events("ann"))[0].name == ERASED
        # Writes never trust the cache: the append re-checks the key under a lock.
        ann = await a.load(ErPerson, "ann")
        assert ann is not None
        ann.apply(ErPersonRenamed(name="Ann Again"))
        with pytest.raises(SubjectForgottenError):
            await a.save(ann)
        assert await a.get_global_position() == 4
        assert (await a.load_events("ann"))[0].name == ERASED  # the refusal evicted the key


async def test_key_cache_is_bounded_and_a_page_needs_one_key_query(dsn: str) -> None:
    async with await EventStore.create(dsn, key_cache_size=3) as store:
        people = []
        for i in range(10):
            person = ErPerson(id=f"c-{i}")
            person.register(f"Name {i}")
            people.append(person)
        await store.save_all(people)
        assert len(store.keys) == 3
        fetches = store.keys.fetches
        events = await store.load_events_from_position(0)
        assert [e.name for e in events] == [f"Name {i}" for i in range(10)]
        assert store.keys.fetches == fetches + 1
        assert len(store.keys) == 3


async def test_concurrent_first_saves_of_one_subject_share_one_key(dsn: str) -> None:
    stores = [await EventStore.create(dsn) for _ in range(4)]
    try:
        orders = []
        for i, store in enumerate(stores):
            order = ErOrder(id=f"o-{i}")
            order.apply(ErOrderPlaced(customer_id="cust-1", ship_to=f"Street {i}", total=i))
            orders.append(store.save(order))
        await asyncio.gather(*orders)
        assert await _fetchval(dsn, "SELECT count(*) FROM eventuali.subject_keys") == 1
        async with await EventStore.create(dsn) as reader:
            events = await reader.load_events_from_position(0)
        assert sorted(e.ship_to for e in events) == [f"Street {i}" for i in range(4)]
    finally:
        for store in stores:
            await store.close()


async def test_subject_from_another_field_and_snapshots_are_deleted(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        order = ErOrder(id="order-7")
        order.apply(ErOrderPlaced(customer_id="cust-9", ship_to="1 Main St", total=42))
        person = ErPerson(id="cust-9")
        person.register("Carol", "carol@example.com")
        person.apply(ErPlanChanged(plan="pro"))  # crosses snapshot_every=2
        await store.save_all([order, person])
        await store.close()  # writes the snapshots
    snapshots = "SELECT count(*) FROM eventuali.snapshots"
    assert await _fetchval(dsn, snapshots) == 2
    assert await _fetchval(dsn, "SELECT count(*) FROM eventuali.subject_keys") == 1
    async with await EventStore.create(dsn) as store:
        await store.forget("cust-9")
        assert await _fetchval(dsn, snapshots) == 0
        loaded = await store.load(ErOrder, "order-7")
        assert loaded is not None
        assert (loaded.customer_id, loaded.ship_to) == ("cust-9", ERASED)
        (placed,) = await store.load_events("order-7")
        assert placed.total == 42 and placed.erased_fields == frozenset({"ship_to"})
        carol = await store.load(ErPerson, "cust-9")
        assert carol is not None and (carol.name, carol.plan) == (ERASED, "pro")


async def test_a_transaction_creates_the_key_and_its_rollback_removes_it(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        person = ErPerson(id="tx-1")
        person.register("Dora")
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.save(person)
                raise RuntimeError("roll back")
        assert await _fetchval(dsn, "SELECT count(*) FROM eventuali.subject_keys") == 0
        person = ErPerson(id="tx-1")
        person.register("Dora")
        async with store.transaction() as tx:
            await tx.save(person)
        (event,) = await store.load_events("tx-1")
        assert event.name == "Dora"


async def test_an_unregistered_type_decodes_its_personal_fields_generically(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await _people(store)
        cls = _registry.pop("ErPersonRegistered")
        try:
            events = await store.load_events("bob")
            assert type(events[0]) is Event and events[0].name == "Bob Jones"
            await store.forget("bob")
            events = await store.load_events("bob")
            assert events[0].name == ERASED and "name" in events[0].erased_fields
            assert events[0].plan == "free"
        finally:
            _registry["ErPersonRegistered"] = cls


# -- streaming, projections, command line -------------------------------------------------------


async def test_live_and_catch_up_deliveries_are_erased(dsn: str) -> None:
    async with (
        await EventStore.create(dsn) as writer,
        await EventStore.create(dsn, notify=False, poll_interval=3600) as follower,
    ):
        streamer = EventStreamer(capacity=100)
        await follower.attach_streamer(streamer)
        live = await streamer.subscribe(Subscription(aggregate_type_filter="ErPerson"))
        # The follower hears nothing (no LISTEN, no poll) until it commits something itself.
        await _people(writer)
        await writer.forget("ann")
        wake = ErPerson(id="zed")
        wake.apply(ErPlanChanged(plan="x"))
        await follower.save(wake)
        got = [await live.recv(timeout=WAIT) for _ in range(4)]
        assert [item.global_position for item in got] == [1, 2, 3, 5]
        assert got[0].event.name == ERASED and got[0].event.plan == "pro"
        assert got[2].event.name == "Bob Jones"
        catch_up = await streamer.subscribe(Subscription(from_position=0))
        replayed = [await catch_up.recv(timeout=WAIT) for _ in range(5)]
        assert replayed[0].event.name == ERASED and replayed[2].event.name == "Bob Jones"
        assert replayed[3].event.event_type == "eventuali_pg.SubjectForgotten"


class Names(TransactionalProjection):
    """A read model of names, with the subject's row erased on forget."""

    async def handle_event(self, event: Event, connection: Any) -> None:
        if isinstance(event, ErPersonRegistered):
            await connection.execute(
                "INSERT INTO erasure_names (id, name, plan) VALUES ($1, $2, $3)",
                event.aggregate_id,
                event.name,
                event.plan,
            )

    async def on_forget(self, subject_id: str, connection: Any) -> None:
        await connection.execute(
            "UPDATE erasure_names SET name = $2 WHERE id = $1", subject_id, ERASED
        )

    async def reset(self, connection: Any) -> None:
        await connection.execute("DELETE FROM erasure_names")


class Forgets(Projection):
    """At-least-once, filtered: still told of forgets."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.forgotten: list[str] = []

    async def handle_event(self, event: Event) -> None:
        self.seen.append(event.event_type)

    async def on_forget(self, subject_id: str) -> None:
        self.forgotten.append(subject_id)


async def test_projections_are_told_in_order_and_replay_erased(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "DROP TABLE IF EXISTS erasure_names; "
        "CREATE TABLE erasure_names (id text PRIMARY KEY, name text, plan text)"
    )
    try:
        async with await EventStore.create(dsn) as store:
            await _people(store)
            names = ProjectionRunner(store, Names(), subscription_id="erasure-names")
            forgets = Forgets()
            filtered = ProjectionRunner(
                store, forgets, subscription_id="erasure-forgets", event_type_filter="ErPlanChanged"
            )
            async with names, filtered:
                await names.wait_for_checkpoint(3, timeout=WAIT)
                rows = await conn.fetch("SELECT id, name FROM erasure_names ORDER BY id")
                assert [(r["id"], r["name"]) for r in rows] == [
                    ("ann", "Ann Smith"),
                    ("bob", "Bob Jones"),
                ]
                position = await store.forget("ann")
                assert position is not None
                await names.wait_for_checkpoint(position, timeout=WAIT)
                await filtered.wait_for_checkpoint(position, timeout=WAIT)
                rows = await conn.fetch("SELECT id, name, plan FROM erasure_names ORDER BY id")
                assert [tuple(r) for r in rows] == [
                    ("ann", ERASED, "pro"),
                    ("bob", "Bob Jones", "free"),
                ]
                assert forgets.forgotten == ["ann"] and forgets.seen == ["ErPlanChanged"]
                checkpoint = await names.checkpoints.get("erasure-names")
                assert checkpoint == position
                await names.reset()  # replay from 0: the rebuilt model never had Ann's name
                await names.wait_for_checkpoint(position, timeout=WAIT)
            rows = await conn.fetch("SELECT id, name FROM erasure_names ORDER BY id")
            assert [(r["id"], r["name"]) for r in rows] == [("ann", ERASED), ("bob", "Bob Jones")]
    finally:
        await conn.execute("DROP TABLE IF EXISTS erasure_names")
        await conn.close()


async def test_inline_projection_erases_in_the_forget_transaction(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "DROP TABLE IF EXISTS erasure_names; "
        "CREATE TABLE erasure_names (id text PRIMARY KEY, name text, plan text)"
    )
    try:
        async with await EventStore.create(dsn, inline_projections=[Names()]) as store:
            await _people(store)
            assert await conn.fetchval("SELECT name FROM erasure_names WHERE id = 'ann'") == (
                "Ann Smith"
            )
            await store.forget("ann")
            assert await conn.fetchval("SELECT name FROM erasure_names WHERE id = 'ann'") == ERASED
    finally:
        await conn.execute("DROP TABLE IF EXISTS erasure_names")
        await conn.close()


async def test_dead_letters_keep_an_erased_copy(dsn: str) -> None:
    class Failing(Projection):
        async def handle_event(self, event: Event) -> None:
            raise RuntimeError("no")

    async with await EventStore.create(dsn) as store:
        await _people(store)
        runner = ProjectionRunner(
            store, Failing(), subscription_id="erasure-dead", max_attempts=1, retry_delay=0.01
        )
        async with runner:
            await runner.wait_for_position(3, timeout=WAIT)
        letters = await runner.dead_letters()
        assert len(letters) == 3
        assert letters[0].event["name"] == ERASED and letters[0].event["plan"] == "pro"
        text = await _fetchval(
            dsn, "SELECT string_agg(event::text, ' ') FROM eventuali.dead_letters"
        )
        assert "Ann Smith" not in text and "Bob Jones" not in text
        loaded = await letters[0].load_event(store)
        assert loaded.name == "Ann Smith"  # a retry reads the event itself, decrypted


async def test_cli_forget_events_and_tail_show_the_erased_form(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        await _people(store)
    refused = await run_cli("forget", "ann", "--dsn", dsn)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = await run_cli("forget", "ann", "--dsn", dsn, "--yes")
    assert done.returncode == 0, done.stderr
    assert "position 4" in done.stdout
    again = await run_cli("forget", "ann", "--dsn", dsn, "--yes")
    assert again.returncode == 3 and "already forgotten" in again.stderr

    events = await run_cli("events", "--dsn", dsn, "--json")
    assert events.returncode == 0, events.stderr
    rows = events.json_lines()
    assert [row["global_position"] for row in rows] == [1, 2, 3, 4]
    assert rows[0]["payload"]["name"] == ERASED and rows[0]["payload"]["plan"] == "pro"
    assert rows[0]["erased_fields"] == ["address", "age", "email", "name", "tags"]
    assert rows[2]["payload"]["name"] == "Bob Jones" and "erased_fields" not in rows[2]
    table = await run_cli("events", "--dsn", dsn)
    assert ERASED in table.stdout and "Ann Smith" not in table.stdout

    tail = await run_cli("tail", "--dsn", dsn, "--json", "--from", "0", "--limit", "3")
    assert tail.returncode == 0, tail.stderr
    lines = tail.json_lines()
    assert lines[0]["payload"]["name"] == ERASED and lines[2]["payload"]["name"] == "Bob Jones"


async def test_every_consumer_group_member_is_told(dsn: str) -> None:
    from eventuali_pg import ConsumerGroup

    async with await EventStore.create(dsn) as store:
        people = [ErPerson(id=f"g-{i}") for i in range(8)]
        for person in people:
            person.register(f"ErPerson {person.id}")
        await store.save_all(people)
        projections = [Forgets(), Forgets()]
        runners = [
            ProjectionRunner(
                store,
                projection,
                subscription_id="erasure-group",
                group=ConsumerGroup(size=2, member=member),
            )
            for member, projection in enumerate(projections)
        ]
        for runner in runners:
            await runner.start()
        try:
            position = await store.forget("g-3")
            assert position is not None
            for runner in runners:
                await runner.wait_for_position(position, timeout=WAIT)
        finally:
            for runner in runners:
                await runner.stop()
        assert [p.forgotten for p in projections] == [["g-3"], ["g-3"]]
        assert sum(len(p.seen) for p in projections) == 8  # each registration handled once


async def test_an_upcast_event_gets_its_class_erased_form(dsn: str) -> None:
    from eventuali_pg import upcaster
    from eventuali_pg.upcasting import _upcasters

    class ErProfileSaved(Event, event_version=2):
        nickname: Annotated[str | None, Personal()] = None
        age: Annotated[int | None, Personal()] = None

    class ErProfile(Aggregate):
        def apply_er_profile_saved(self, event: ErProfileSaved) -> None:
            pass

    @upcaster("ErProfileSaved", from_version=1)
    def same(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    try:
        async with await EventStore.create(dsn) as store:
            profile = ErProfile(id="prof-1")
            profile.apply(ErProfileSaved(nickname="Zed", age=40, event_version=1))
            await store.save(profile)
            (event,) = await store.load_events("prof-1")
            assert (event.nickname, event.age, event.event_version) == ("Zed", 40, 2)
            await store.forget("prof-1")
            (event,) = await store.load_events("prof-1")
            assert event.decode_error is None
            assert (event.nickname, event.age) == (ERASED, None)
            assert event.erased_fields == {"nickname", "age"}
    finally:
        _upcasters.pop(("ErProfileSaved", 1), None)
        _registry.pop("ErProfileSaved", None)
