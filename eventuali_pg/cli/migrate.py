"""``eventuali-pg migrate``: a thin layer over the alembic migrations shipped in the package."""

from __future__ import annotations

import argparse

from . import EXIT_CHECK_FAILED, EXIT_OK, CommandResult
from .output import json_text, note, safe_text
from .parser import UsageError
from .target import Target, resolve


def run(args: argparse.Namespace) -> CommandResult:
    """Upgrade to head, print the SQL (``--sql``), or show the revision (``current``)."""
    show_current = args.action == "current" or bool(args.show_current)
    if args.sql and show_current:
        raise UsageError("--sql prints the upgrade; it cannot be combined with `current`")
    if args.json and not show_current:
        raise UsageError("--json goes with `migrate current`")
    if args.partition_size is not None and show_current:
        raise UsageError("--partition-size goes with the upgrade, not with `current`")
    if args.sql:
        return print_sql(str(args.schema), args.partition_size)
    if show_current:
        return _current(args)
    return _upgrade(args)


def print_sql(schema: str, partition_size: int | None = None) -> int:
    """Print the SQL of the whole upgrade to head (alembic offline mode); no database needed.
    With ``partition_size``, the events table is created partitioned."""
    from alembic import command

    from ..migration import PARTITION_SIZE_ATTRIBUTE, alembic_config

    config = alembic_config(schema)
    if partition_size is not None:
        config.attributes[PARTITION_SIZE_ATTRIBUTE] = partition_size
    command.upgrade(config, "head", sql=True)
    return EXIT_OK


async def _upgrade(args: argparse.Namespace) -> int:
    from ..migration import upgrade_schema

    target = await resolve(args, migrate_embedded=False)
    result = await upgrade_schema(
        target.dsn, schema=target.schema, partition_size=args.partition_size
    )
    if not result.changed:
        where = (
            f" (recorded in {result.table} by your application's alembic setup)"
            if result.by_application
            else ""
        )
        print(
            f"schema {target.schema!r} is already at the newest revision, {result.after}{where}"
        )
    else:
        print(
            f"upgraded schema {target.schema!r} from {result.before or 'nothing'} to "
            f"{result.after} (head) on {target.describe()}"
        )
    if args.partition_size is not None:
        print(
            f"events of schema {target.schema!r} are partitioned by global_position, "
            f"{args.partition_size} per partition"
        )
    return EXIT_OK


async def _current(args: argparse.Namespace) -> int:
    from ..migration import find_revision, head_revision
    from .target import connect

    target: Target = await resolve(args, migrate_embedded=False)
    connection = await connect(target)
    try:
        found = await find_revision(connection, target.schema)
    finally:
        await connection.close()
    revision = found.revision if found is not None else None
    head = head_revision()
    if args.json:
        print(
            json_text(
                {
                    "schema": target.schema,
                    "revision": revision,
                    "head": head,
                    "up_to_date": revision == head,
                }
            )
        )
    elif found is None:
        print("none")
        note(f"schema {target.schema!r} was never migrated; run `eventuali-pg migrate`")
    elif revision == head:
        print(f"{revision} (head)")
    elif not found.known:
        print(safe_text(revision or "unknown"))
        note(
            f"the database is at a newer revision than this eventuali-pg knows (its newest is "
            f"{head}): it was migrated by a newer release; upgrade eventuali-pg "
            "(pip install -U eventuali-pg)"
        )
    elif found.by_application:
        print(revision)
        note(
            f"the newest revision is {head}; the revisions are recorded in {found.table} by "
            "your application's alembic setup: run `alembic upgrade heads` there"
        )
    else:
        print(revision)
        note(f"the newest revision is {head}; run `eventuali-pg migrate` to upgrade")
    return EXIT_OK if revision == head else EXIT_CHECK_FAILED
