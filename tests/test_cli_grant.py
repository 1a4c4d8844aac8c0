"""eventuali-pg grant, and the read commands (status, tail) as the writer and the reader role;
migrating as either fails in one clean line (issue 11 item 3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from helpers.cli_data import bump, write_accounts
from helpers.cli_run import assert_one_clean_error_line, read_line, run_cli, start_cli, stop_process
from helpers.roles import Roles, made_roles

from eventuali_pg import EventStore
from eventuali_pg.projections import CheckpointStore


@pytest.fixture
async def ungranted(dsn: str) -> AsyncIterator[Roles]:
    async with made_roles(dsn, grant=False) as roles:
        yield roles


async def test_grant_prints_what_each_role_holds_and_is_idempotent(
    dsn: str, ungranted: Roles
) -> None:
    args = ("grant", "--dsn", dsn, "--writer", ungranted.writer, "--reader", ungranted.reader)
    first = await run_cli(*args, "--json")
    assert first.returncode == 0, first.stderr
    report = first.json()
    assert (report["writer"], report["reader"], report["schema"]) == (
        ungranted.writer,
        ungranted.reader,
        "eventuali",
    )
    held = {(g["role"], g["object_name"]): g["privileges"] for g in report["grants"]}
    assert held[(ungranted.writer, "eventuali.events")] == ["SELECT", "INSERT"]
    assert held[(ungranted.reader, "eventuali.events")] == ["SELECT"]
    assert held[(ungranted.reader, "eventuali.checkpoints")] == ["SELECT"]
    again = await run_cli(*args, "--json")
    assert again.returncode == 0, again.stderr
    assert again.json() == report
    text = await run_cli(*args)
    assert text.returncode == 0, text.stderr
    assert f"writer {ungranted.writer} on schema 'eventuali'" in text.stdout
    assert "eventuali.events" in text.stdout and "SELECT, INSERT" in text.stdout
    assert "again after every `eventuali-pg migrate`" in text.stdout


async def test_grant_needs_a_role_and_the_owner(dsn: str, ungranted: Roles) -> None:
    usage = await run_cli("grant", "--dsn", dsn)
    assert usage.returncode == 2
    assert_one_clean_error_line(usage.stderr, "--writer ROLE")
    missing = await run_cli("grant", "--dsn", dsn, "--reader", "no_such_role_for_eventuali")
    assert missing.returncode == 1
    assert_one_clean_error_line(missing.stderr, "does not exist")
    as_writer = await run_cli(
        "grant", "--dsn", ungranted.writer_dsn, "--reader", ungranted.reader
    )
    assert as_writer.returncode == 1
    assert_one_clean_error_line(as_writer.stderr, "granting is the owner's work")


async def test_status_tail_events_and_dead_letters_work_as_the_writer_and_the_reader(
    dsn: str,
) -> None:
    async with made_roles(dsn) as roles:
        await write_accounts(roles.writer_dsn, ["ann"], deposits=1)  # positions 1, 2
        async with await EventStore.create(roles.writer_dsn) as store:
            await CheckpointStore(store).advance("by-writer", 1)
        for role_dsn in (roles.writer_dsn, roles.reader_dsn):
            status = await run_cli("status", "--dsn", role_dsn, "--json")
            assert status.returncode == 0, status.stderr
            report = status.json()
            assert report["head"] == 2
            assert [(s["subscription_id"], s["lag"]) for s in report["subscriptions"]] == [
                ("by-writer", 1)
            ]
            history = await run_cli("tail", "--dsn", role_dsn, "--json", "--from", "0",
                                    "--limit", "2")
            assert history.returncode == 0, history.stderr
            assert [row["global_position"] for row in history.json_lines()] == [1, 2]
            events = await run_cli("events", "--dsn", role_dsn, "--json")
            assert events.returncode == 0, events.stderr
            assert len(events.json_lines()) == 2
            letters = await run_cli("dead-letters", "list", "--dsn", role_dsn, "--json")
            assert letters.returncode == 0, letters.stderr


async def test_tail_follows_live_events_as_the_reader(dsn: str) -> None:
    async with made_roles(dsn) as roles:
        proc = await start_cli("tail", "--dsn", roles.reader_dsn, "--json")
        try:
            note = await read_line(proc.stderr)
            assert "following" in note, note
            await bump(roles.writer_dsn, "c-live", 2)
            rows = [json.loads(await read_line(proc.stdout)) for _ in range(2)]
            assert [row["global_position"] for row in rows] == [1, 2]
        finally:
            await stop_process(proc)


async def test_migrating_as_the_writer_is_one_clean_error(dsn: str, scratch_schema: str) -> None:
    async with made_roles(dsn) as roles:
        result = await run_cli("migrate", "--dsn", roles.writer_dsn, "--schema", scratch_schema)
        assert result.returncode == 1
        assert_one_clean_error_line(
            result.stderr, "may not migrate", "migrations run as the schema's owner"
        )
        # Even with nothing to do (the default schema is at head): the owner's command.
        again = await run_cli("migrate", "--dsn", roles.reader_dsn)
        assert again.returncode == 1
        assert_one_clean_error_line(again.stderr, "may not migrate schema 'eventuali'")
        current = await run_cli("migrate", "current", "--dsn", roles.reader_dsn)
        assert current.returncode == 0, current.stderr
        assert "(head)" in current.stdout
