"""``eventuali-pg forget SUBJECT --yes``: destroy a data subject's key (crypto-shredding)."""

from __future__ import annotations

import argparse

from . import EXIT_CHECK_FAILED, EXIT_OK
from .output import note
from .parser import UsageError
from .target import open_store, resolve


async def run(args: argparse.Namespace) -> int:
    """Forget ``SUBJECT``; exit 3 when it was already forgotten."""
    subject: str = args.subject
    if not args.yes:
        raise UsageError(
            f"forget destroys the key of subject {subject!r}: its personal fields become "
            "unreadable for good (events and positions stay). Add --yes to proceed"
        )
    target = await resolve(args)
    async with await open_store(target, pool_max_size=2) as store:
        position = await store.forget(subject)
    if position is None:
        note(f"subject {subject!r} was already forgotten; nothing changed")
        return EXIT_CHECK_FAILED
    print(
        f"forgot subject {subject!r}: its key is destroyed and its personal fields read as "
        f"[erased]; SubjectForgotten recorded at position {position}"
    )
    return EXIT_OK
