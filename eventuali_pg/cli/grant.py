"""``eventuali-pg grant``: least privileges for a writer and a reader role (as the owner)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from . import EXIT_OK
from .output import json_text, safe_text
from .parser import UsageError
from .target import resolve


async def run(args: argparse.Namespace) -> int:
    """Grant ``--writer`` and ``--reader`` their privileges; print what each role holds."""
    from ..roles import grant_roles

    if args.writer is None and args.reader is None:
        raise UsageError("name a role to grant: --writer ROLE, --reader ROLE, or both")
    target = await resolve(args, migrate_embedded=False)
    report = await grant_roles(
        target.dsn, writer=args.writer, reader=args.reader, schema=target.schema
    )
    if args.json:
        print(json_text(asdict(report)))
        return EXIT_OK
    for kind, role in (("writer", report.writer), ("reader", report.reader)):
        if role is None:
            continue
        print(f"{kind} {safe_text(role)} on schema {report.schema!r} of {target.describe()}:")
        for grant in report.grants:
            if grant.role != role:
                continue
            held = ", ".join(grant.privileges) or "nothing"
            print(f"  {grant.object_type:<9} {safe_text(grant.object_name):<48} {held}")
    print("run `eventuali-pg grant` again after every `eventuali-pg migrate`")
    return EXIT_OK
