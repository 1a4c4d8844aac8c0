"""``eventuali-pg migrate``: a thin layer over the alembic migrations shipped in the package."""

from __future__ import annotations

import argparse

from . import EXIT_CHECK_FAILED, EXIT_OK, CommandResult
from .output import json_text, note
from .parser import UsageError
from .target import Target, resolve


def run(args: argparse.Namespace) -> CommandResult:
    """Upgrade to head, print the SQL (``--sql``), or show the revision (``current``)."""
    show_current = args.action == "current" or bool(args.show_current)
    if args.sql and show_current:
        raise UsageError("--sql prints the upgrade; it cannot be combined with `current`")
    if args.json and not show_current:
        raise UsageError("--json goes with `migrate current`")
    if args.sql:
        return print_sql(str(args.schema))
    if show_current:
        return _current(args)
    return _upgrade(args)


def print_sql(schema: str) -> int:
    """Print the SQL of the whole upgrade to head (alembic offline mode); no database needed."""
    from alembic import command

    from ..migration import alembic_config

    command.upgrade(alembic_config(schema), "head", sql=True)
    return EXIT_OK


async def _upgrade(args: argparse.Namespace) -> int:
    from ..migration import current_revision, head_revision, migrate

    target = await resolve(args, migrate_embedded=False)
    before = await current_revision(target.dsn, schema=target.schema)
    await migrate(target.dsn, schema=target.schema)
    head = head_revision()
    if before == head:
        print(f"schema {target.schema!r} is already at the newest revision, {head}")
    else:
        print(
            f"upgraded schema {target.schema!r} from {before or 'nothing'} to {head} (head) "
            f"on {target.describe()}"
        )
    return EXIT_OK


async def _current(args: argparse.Namespace) -> int:
    from ..migration import current_revision, head_revision

    target: Target = await resolve(args, migrate_embedded=False)
    revision = await current_revision(target.dsn, schema=target.schema)
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
    elif revision is None:
        print("none")
        note(f"schema {target.schema!r} was never migrated; run `eventuali-pg migrate`")
    elif revision == head:
        print(f"{revision} (head)")
    else:
        print(revision)
        note(f"the newest revision is {head}; run `eventuali-pg migrate` to upgrade")
    return EXIT_OK if revision == head else EXIT_CHECK_FAILED
