"""Roles at the edges (real PostgreSQL): role names that need quoting, and an elastic group
member whose role lacks the consumer-group tables (granted before the migration that made
them) is refused at start with the privilege named."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import asyncpg
import pytest
from helpers.roles import as_role, made_roles

from eventuali_pg import (
    ConfigurationError,
    ElasticGroup,
    Event,
    EventStore,
    PermissionDeniedError,
    ProjectionRunner,
)
from eventuali_pg.projections import Projection
from eventuali_pg.roles import grant_roles


class Idle(Projection):
    async def handle_event(self, event: Event) -> None:
        return None


@pytest.mark.parametrize("table", ["group_members", "group_partitions"])
async def test_an_elastic_member_without_the_group_tables_is_refused_at_start(
    dsn: str, table: str
) -> None:
    async with made_roles(dsn) as roles:
        admin = await asyncpg.connect(dsn)
        try:  # as after a grant run before the revision that added the table
            await admin.execute(f"REVOKE ALL ON eventuali.{table} FROM {roles.writer}")
        finally:
            await admin.close()
        async with await EventStore.create(roles.writer_dsn) as store:
            runner = ProjectionRunner(
                store,
                Idle(),
                subscription_id="refused",
                group=ElasticGroup(member_id="m", lease_seconds=2, heartbeat_seconds=0.2),
            )
            with pytest.raises(PermissionDeniedError) as caught:
                await runner.start()
            assert not runner.running
    error = caught.value
    assert error.object_name == table
    assert error.role == roles.writer
    assert "SELECT" in error.privileges and "eventuali-pg grant --writer" in str(error)


async def test_role_names_that_need_quoting_are_granted(dsn: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    writer, reader = f"App Writer {suffix}", f'rea"der {suffix}'
    admin = await asyncpg.connect(dsn)
    quoted = ['"' + name.replace('"', '""') + '"' for name in (writer, reader)]
    try:
        await admin.execute(f"CREATE ROLE {quoted[0]} LOGIN; CREATE ROLE {quoted[1]} LOGIN")
        try:
            report = await grant_roles(dsn, writer=writer, reader=reader)
            assert {g.role for g in report.grants} == {writer, reader}
            held = await admin.fetchval(
                "SELECT has_table_privilege($1, 'eventuali.events', 'INSERT') "
                "AND has_table_privilege($2, 'eventuali.events', 'SELECT') "
                "AND NOT has_table_privilege($2, 'eventuali.events', 'INSERT')",
                writer,
                reader,
            )
            assert held
            async with await EventStore.create(as_role(dsn, quote(writer))) as store:
                assert await store.get_global_position() == 0
        finally:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = ANY($1::text[])",
                [writer, reader],
            )
            await admin.execute(f"DROP OWNED BY {quoted[0]}, {quoted[1]}")
            await admin.execute(f"DROP ROLE {quoted[0]}; DROP ROLE {quoted[1]}")
    finally:
        await admin.close()


async def test_a_reader_that_is_a_member_of_the_writer_is_refused(dsn: str) -> None:
    """It would hold every privilege of the writer (it could save): not a reader."""
    async with made_roles(dsn, grant=False) as roles:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"GRANT {roles.writer} TO {roles.reader}")
            with pytest.raises(ConfigurationError, match="member of"):
                await grant_roles(dsn, writer=roles.writer, reader=roles.reader)
            granted = await admin.fetchval(
                "SELECT has_table_privilege($1, 'eventuali.events', 'INSERT')", roles.writer
            )
            assert not granted  # refused before anything was granted
            await admin.execute(f"REVOKE {roles.writer} FROM {roles.reader}")
        finally:
            await admin.close()
