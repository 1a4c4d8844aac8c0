"""Least-privilege roles (issue 11 item 3): `grant_roles` gives a writer and a reader exactly
the policy; the whole streaming path works as each; every forbidden action fails with a
PermissionDeniedError naming the privilege and the grant to run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
from helpers.domain import BankAccount
from helpers.roles import Roles, as_role, made_roles
from helpers.streaming_domain import Collector, cancel_leftover_collectors

import eventuali_pg
from eventuali_pg import (
    ConfigurationError,
    Event,
    EventStore,
    EventStreamer,
    PermissionDeniedError,
    SchemaNotReadyError,
    Subscription,
)
from eventuali_pg.projections import (
    CheckpointStore,
    ConsumerGroup,
    DeadLetterQueue,
    Projection,
    ProjectionRunner,
)
from eventuali_pg.roles import grant_roles
from eventuali_pg.roles.policy import TABLES, table_privileges

WAIT = 60.0  # a bound on any single wait: a failure, never a measurement
SCHEMA = "eventuali"
ALL_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES",
                        "TRIGGER")


@pytest.fixture(autouse=True)
async def _no_leftover_collectors() -> AsyncIterator[None]:
    yield
    await cancel_leftover_collectors()


@pytest.fixture
async def roles(dsn: str) -> AsyncIterator[Roles]:
    async with made_roles(dsn) as made:
        yield made


class Recorder(Projection):
    """At-least-once, in memory; fails for good on accounts whose owner is 'poison'."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    async def handle_event(self, event: Event) -> None:
        if getattr(event, "owner", "") == "poison":
            raise ValueError("poisoned")
        self.seen.append(event.aggregate_id)


async def open_accounts(store: EventStore, *owners: str) -> list[BankAccount]:
    accounts = []
    for owner in owners:
        account = BankAccount(id=f"acc-{owner}")
        account.open(owner)
        account.deposit(Decimal(5))
        await store.save(account)
        accounts.append(account)
    return accounts


async def held_privileges(dsn: str, role: str, schema: str = SCHEMA) -> dict[str, set[str]]:
    """table -> the privileges ``role`` holds on it, read from the catalog."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, p.privilege FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace, unnest($3::text[]) AS p(privilege) "
            "WHERE n.nspname = $2 AND c.relkind IN ('r', 'p', 'v') "
            "AND has_table_privilege($1, c.oid, p.privilege)",
            role,
            schema,
            list(ALL_TABLE_PRIVILEGES),
        )
    finally:
        await conn.close()
    held: dict[str, set[str]] = {}
    for row in rows:
        held.setdefault(row["relname"], set()).add(row["privilege"])
    return held


async def table_names(dsn: str, schema: str = SCHEMA) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
    finally:
        await conn.close()
    return {row[0] for row in rows}


# -- the grant ---------------------------------------------------------------------------------


async def test_each_role_holds_exactly_the_policy_and_cannot_create(
    dsn: str, roles: Roles
) -> None:
    tables = await table_names(dsn)
    assert set(TABLES) <= tables  # the policy names real tables (a renamed one would not be)
    for role, kind in ((roles.writer, "writer"), (roles.reader, "reader")):
        held = await held_privileges(dsn, role)
        expected = {t: set(table_privileges(t).of(kind)) for t in tables}
        assert {t: held.get(t, set()) for t in tables} == expected, kind
    conn = await asyncpg.connect(dsn)
    try:
        for role in (roles.writer, roles.reader):
            assert not await conn.fetchval(
                "SELECT has_schema_privilege($1, $2, 'CREATE')", role, SCHEMA
            )
            assert await conn.fetchval("SELECT has_schema_privilege($1, $2, 'USAGE')", role, SCHEMA)
        # The outbox's commit trigger and the append-only triggers run as the writer.
        assert await conn.fetchval(
            "SELECT has_function_privilege($1, $2, 'EXECUTE')",
            roles.writer,
            f"{SCHEMA}.assign_pending_positions()",
        )
    finally:
        await conn.close()


async def test_grant_again_changes_nothing_and_takes_back_extra_privileges(
    dsn: str, roles: Roles
) -> None:
    async def acls() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT c.relname, coalesce(c.relacl::text, '') FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
                "ORDER BY 1",
                SCHEMA,
            )
            return [(row[0], row[1]) for row in rows]
        finally:
            await conn.close()

    before = await acls()
    await grant_roles(dsn, writer=roles.writer, reader=roles.reader, schema=SCHEMA)
    assert await acls() == before
    conn = await asyncpg.connect(dsn)
    try:  # someone gave the reader too much by hand; the grant puts it back to the policy
        await conn.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {SCHEMA} TO {roles.reader}")
        await conn.execute(f"GRANT CREATE ON SCHEMA {SCHEMA} TO {roles.reader}")
    finally:
        await conn.close()
    assert await acls() != before
    await grant_roles(dsn, reader=roles.reader, schema=SCHEMA)
    assert await acls() == before
    assert (await held_privileges(dsn, roles.reader))["events"] == {"SELECT"}


async def test_a_table_added_later_is_covered_by_the_default_after_granting_again(
    dsn: str, scratch_schema: str
) -> None:
    await eventuali_pg.migrate(dsn, schema=scratch_schema)
    async with made_roles(dsn, schema=scratch_schema) as roles:
        conn = await asyncpg.connect(dsn)
        try:  # what a later migration does (say, a table of erasure keys)
            await conn.execute(f"CREATE TABLE {scratch_schema}.future_keys (id text)")
        finally:
            await conn.close()
        assert "future_keys" not in await held_privileges(dsn, roles.writer, scratch_schema)
        await grant_roles(dsn, writer=roles.writer, reader=roles.reader, schema=scratch_schema)
        writer = await held_privileges(dsn, roles.writer, scratch_schema)
        reader = await held_privileges(dsn, roles.reader, scratch_schema)
        assert writer["future_keys"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}
        assert reader["future_keys"] == {"SELECT"}


async def test_grant_refuses_what_would_not_be_least_privilege(dsn: str, roles: Roles) -> None:
    with pytest.raises(ConfigurationError, match="does not exist: create it first"):
        await grant_roles(dsn, writer="no_such_role_for_eventuali")
    with pytest.raises(ConfigurationError, match="both the writer and the reader"):
        await grant_roles(dsn, writer=roles.writer, reader=roles.writer)
    with pytest.raises(ConfigurationError, match="superuser"):
        await grant_roles(dsn, writer="postgres")
    with pytest.raises(ConfigurationError, match="a writer role, a reader role, or both"):
        await grant_roles(dsn)
    with pytest.raises(SchemaNotReadyError, match="migrate"):
        await grant_roles(dsn, writer=roles.writer, schema="never_migrated_here")


# -- the writer --------------------------------------------------------------------------------


async def test_the_writer_saves_loads_and_streams_live_and_from_history(
    dsn: str, roles: Roles
) -> None:
    async with await EventStore.create(roles.writer_dsn) as store:
        await open_accounts(store, "ann")  # positions 1-2 before anyone subscribes
        streamer = EventStreamer()
        # No polling to speak of: live events can only come through LISTEN.
        async with await EventStore.create(
            roles.writer_dsn, streamer=streamer, poll_interval=3600
        ) as streaming:
            history = Collector(await streamer.subscribe(Subscription(id="h", from_position=0)))
            live = Collector(await streamer.subscribe(Subscription(id="live")))
            accounts = await open_accounts(store, "bob", "cy")  # positions 3-6
            await history.wait_for(6, WAIT)
            await live.wait_for(6, WAIT)
            assert history.positions == [1, 2, 3, 4, 5, 6]
            assert live.positions == [3, 4, 5, 6]
            stats = streaming.stats()
            assert stats is not None and stats.notifications >= 1
        loaded = await store.load(BankAccount, "acc-bob")
        assert loaded is not None and loaded.balance == Decimal(5)
        # In the caller's transaction: the commit trigger moves the events as the writer.
        accounts[0].deposit(Decimal(1))
        async with store.transaction() as tx:
            await tx.save(accounts[0])
        assert await store.get_global_position() == 7


async def test_the_writer_runs_projections_with_checkpoints_dead_letters_groups_and_leases(
    dsn: str, roles: Roles
) -> None:
    async with await EventStore.create(roles.writer_dsn, poll_interval=0.2) as store:
        await open_accounts(store, "ann", "poison", "bob")  # 6 events; 3 is poisoned
        plain = Recorder()
        runner = ProjectionRunner(
            store, plain, subscription_id="by-writer", max_attempts=1, retry_delay=0.01
        )
        grouped = Recorder()
        member = ProjectionRunner(
            store,
            grouped,
            subscription_id="grouped",
            group=ConsumerGroup(size=1, member=0),
            single_active=True,
        )
        async with runner, member:
            await runner.wait_for_checkpoint(6, WAIT)
            await member.wait_for_checkpoint(6, WAIT)
        assert await CheckpointStore(store).get("by-writer") == 6
        letters = await runner.dead_letters()
        assert [letter.global_position for letter in letters] == [3]
        assert plain.seen.count("acc-poison") == 1  # the deposit, not the poisoned opening
        assert await runner.discard_dead_letter(3)
        assert await DeadLetterQueue(store).list("by-writer") == []
        await runner.reset()  # rewinds its checkpoint: DELETE/UPDATE on checkpoints
        assert await CheckpointStore(store).get("by-writer") in (None, 0)


# -- the reader --------------------------------------------------------------------------------


async def test_the_reader_loads_and_streams_live_and_from_history(
    dsn: str, roles: Roles
) -> None:
    async with await EventStore.create(roles.writer_dsn) as writer:
        await open_accounts(writer, "ann")
        streamer = EventStreamer()
        async with await EventStore.create(
            roles.reader_dsn, streamer=streamer, poll_interval=3600
        ) as reader:
            history = Collector(await streamer.subscribe(Subscription(id="h", from_position=0)))
            live = Collector(await streamer.subscribe(Subscription(id="live")))
            await open_accounts(writer, "bob")
            await history.wait_for(4, WAIT)
            await live.wait_for(4, WAIT)
            assert history.positions == [1, 2, 3, 4]
            assert live.positions == [3, 4]
            stats = reader.stats()
            assert stats is not None and stats.notifications >= 1
            loaded = await reader.load(BankAccount, "acc-ann")
            assert loaded is not None and loaded.owner == "ann"
            assert await reader.get_global_position() == 4
            assert [c.subscription_id for c in await CheckpointStore(reader).list()] == []


async def test_the_reader_cannot_save_and_is_told_which_privilege_and_grant(
    dsn: str, roles: Roles
) -> None:
    async with await EventStore.create(roles.reader_dsn) as reader:
        account = BankAccount(id="acc-denied")
        account.open("denied")
        with pytest.raises(PermissionDeniedError) as raised:
            await reader.save(account)
        error = raised.value
        assert error.role == roles.reader
        assert error.object_type == "table"
        assert error.object_name in {"streams", "events", "global_sequence"}
        assert error.privileges == tuple(
            p for p in table_privileges(error.object_name or "").writer if p != "SELECT"
        )
        message = str(error)
        assert f"lacks {', '.join(error.privileges)} on table {error.object_name}" in message
        assert f"eventuali-pg grant --writer {roles.reader}" in message
        assert account.get_uncommitted_events()  # kept, as after any failed save
        with pytest.raises(PermissionDeniedError, match="lacks INSERT"):
            async with reader.transaction() as tx:
                await tx.save(account)
        assert await reader.get_global_position() == 0


async def test_the_reader_cannot_move_checkpoints_handle_dead_letters_or_run_projections(
    dsn: str, roles: Roles
) -> None:
    async with await EventStore.create(roles.writer_dsn) as writer:
        await open_accounts(writer, "ann")
    async with await EventStore.create(roles.reader_dsn) as reader:
        with pytest.raises(PermissionDeniedError, match="on table checkpoints") as raised:
            await CheckpointStore(reader).advance("by-reader", 1)
        assert "INSERT" in raised.value.privileges
        assert f"grant --writer {roles.reader}" in str(raised.value)
        with pytest.raises(PermissionDeniedError, match="on table dead_letters"):
            await DeadLetterQueue(reader).retry("by-writer", 1, Recorder())
        with pytest.raises(PermissionDeniedError, match="on table dead_letters"):
            await DeadLetterQueue(reader).discard("by-writer", 1)
        runner = ProjectionRunner(reader, Recorder(), subscription_id="by-reader")
        with pytest.raises(PermissionDeniedError) as raised:
            await runner.start()
        assert not runner.running
        message = str(raised.value)
        assert "lacks INSERT, UPDATE, DELETE on table eventuali.checkpoints" in message
        assert "running projection 'by-reader'" in message
        assert f"grant --writer {roles.reader}" in message


async def test_an_ungranted_role_is_told_to_run_grant(dsn: str) -> None:
    async with made_roles(dsn, grant=False) as roles:
        with pytest.raises(PermissionDeniedError, match="lacks USAGE on schema") as raised:
            await EventStore.create(roles.reader_dsn)
        assert "eventuali-pg grant" in str(raised.value)


# -- migrations are the owner's ------------------------------------------------------------------


async def test_migrations_as_the_writer_fail_clearly(dsn: str, scratch_schema: str) -> None:
    async with made_roles(dsn) as roles:
        with pytest.raises(PermissionDeniedError, match="migrations run as the schema's owner"):
            await eventuali_pg.migrate(roles.writer_dsn, schema=scratch_schema)
        # An older schema, granted: upgrading it needs CREATE in it, which no grant gives.
        await eventuali_pg.migrate(dsn, schema=scratch_schema, revision="0006_snapshots")
        await grant_roles(dsn, writer=roles.writer, reader=roles.reader, schema=scratch_schema)
        for role_dsn in (roles.writer_dsn, roles.reader_dsn):
            with pytest.raises(PermissionDeniedError, match="may not migrate") as raised:
                await eventuali_pg.migrate(role_dsn, schema=scratch_schema)
            assert "connected as the owner" in str(raised.value)
        await eventuali_pg.migrate(dsn, schema=scratch_schema)


async def test_a_non_default_schema(dsn: str, scratch_schema: str) -> None:
    await eventuali_pg.migrate(dsn, schema=scratch_schema)
    async with made_roles(dsn, schema=scratch_schema) as roles:
        async with await EventStore.create(roles.writer_dsn, schema=scratch_schema) as writer:
            await open_accounts(writer, "ann")
        async with await EventStore.create(roles.reader_dsn, schema=scratch_schema) as reader:
            assert await reader.get_global_position() == 2
            with pytest.raises(PermissionDeniedError, match="grant --writer"):
                await open_accounts(reader, "bob")
        # The default schema was not granted to them.
        with pytest.raises(PermissionDeniedError, match="on schema eventuali"):
            await EventStore.create(roles.writer_dsn)




async def test_the_production_setup_an_owner_that_is_no_superuser(
    dsn: str, scratch_schema: str
) -> None:
    owner = f"test_owner_{scratch_schema.removeprefix('scratch_')}"
    admin = await asyncpg.connect(dsn)
    database = await admin.fetchval("SELECT current_database()")
    await admin.execute(f"CREATE ROLE {owner} LOGIN")
    await admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO {owner}')
    owner_dsn = as_role(dsn, owner)
    try:
        await eventuali_pg.migrate(owner_dsn, schema=scratch_schema)
        async with made_roles(dsn, grant=False) as roles:
            with pytest.raises(PermissionDeniedError, match="granting is the owner's work"):
                await grant_roles(roles.writer_dsn, writer=roles.reader, schema=scratch_schema)
            report = await grant_roles(
                owner_dsn, writer=roles.writer, reader=roles.reader, schema=scratch_schema
            )
            assert {g.object_name for g in report.grants if g.object_type == "table"} == {
                f"{scratch_schema}.{t}" for t in await table_names(dsn, scratch_schema)
            }
            async with await EventStore.create(roles.writer_dsn, schema=scratch_schema) as store:
                await open_accounts(store, "ann")
                async with ProjectionRunner(store, Recorder(), subscription_id="p") as runner:
                    await runner.wait_for_checkpoint(2, WAIT)
            async with await EventStore.create(roles.reader_dsn, schema=scratch_schema) as store:
                assert await store.load(BankAccount, "acc-ann") is not None
            with pytest.raises(ConfigurationError, match="owns the tables"):
                await grant_roles(owner_dsn, reader=owner, schema=scratch_schema)
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {scratch_schema} CASCADE")
        await admin.execute(f"DROP OWNED BY {owner}; DROP ROLE {owner}")
        await admin.close()
