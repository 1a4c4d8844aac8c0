"""``eventuali-pg dead-letters list|show|discard|retry``: the events projections parked.

A letter is named by its subscription id and the event's global position. ``retry`` cannot run
an application's handler by itself: it imports the application's projection from
``--projection module:attribute`` (the current directory on the import path, as with
``python -m``) and hands it the event through :meth:`DeadLetterQueue.retry`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from . import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK
from .output import (
    console,
    event_record,
    json_text,
    note,
    plain,
    safe_text,
    short_time,
    write_json_line,
)
from .parser import PROG, UsageError
from .target import open_store, resolve

if TYPE_CHECKING:
    from ..projections import DeadLetter, DeadLetterQueue
    from ..projections.projection import AnyProjection

COMMAND = f"{PROG} dead-letters"


def _generic_event(copy: dict[str, Any]) -> Any:
    from ..models import Event

    return Event.model_validate(copy)


class ProjectionImportError(Exception):
    """``--projection`` names nothing importable that is (or builds) a projection."""


# -- list --------------------------------------------------------------------------------------


async def run_list(args: argparse.Namespace) -> int:
    """Print parked events (a table, or one JSON object per line with ``--json``)."""
    limit: int = args.limit
    async with _queue(args) as queue:
        letters = await queue.list(args.subscription, limit=limit + 1)
    letters, more = letters[:limit], len(letters) > limit
    if args.json:
        for letter in letters:
            write_json_line(letter_record(letter))
    else:
        _print_table(letters)
    whose = f"subscription {args.subscription!r}" if args.subscription else "any subscription"
    if not letters:
        note(f"no parked events for {whose}")
    elif more:
        note(f"{len(letters)} letters shown, there are more: raise --limit")
    return EXIT_OK


def _print_table(letters: list[DeadLetter]) -> None:
    from rich import box
    from rich.table import Table

    if not letters:
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("subscription", overflow="fold")
    table.add_column("position", justify="right", style="bold")
    table.add_column("event type", style="green", overflow="fold")
    table.add_column("aggregate", style="cyan", overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("parked (UTC)", style="dim", no_wrap=True)
    table.add_column("error", style="red", overflow="ellipsis", no_wrap=True, max_width=70)
    for letter in letters:
        table.add_row(
            plain(letter.subscription_id),
            str(letter.global_position),
            plain(letter.event_type),
            plain(f"{letter.aggregate_type} {letter.aggregate_id}"),
            str(letter.attempts),
            short_time(letter.parked_at),
            plain(first_line(letter.error)),
        )
    console().print(table)


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (an error message may span several)."""
    for line in text.splitlines():
        if line.strip():
            return line.rstrip()
    return text.strip()


def letter_record(letter: DeadLetter) -> dict[str, Any]:
    """A parked event as a JSON-ready dict: where it is, the error, and the event."""
    return {
        "subscription_id": letter.subscription_id,
        "global_position": letter.global_position,
        "event_id": str(letter.event_id),
        "event_type": letter.event_type,
        "aggregate_type": letter.aggregate_type,
        "aggregate_id": letter.aggregate_id,
        "attempts": letter.attempts,
        "parked_at": letter.parked_at.isoformat(),
        "last_failed_at": letter.last_failed_at.isoformat(),
        "error": letter.error,
        "traceback": letter.traceback,
        # the copy made when it was parked, shown as stored (generic: no class decodes it)
        "event": event_record(_generic_event(letter.event)),
    }


# -- show --------------------------------------------------------------------------------------


async def run_show(args: argparse.Namespace) -> int:
    """Print one parked event in full; exit 3 when there is none."""
    async with _queue(args) as queue:
        letter = await queue.get(args.subscription, args.position)
    if letter is None:
        return _not_parked(args.subscription, args.position)
    record = letter_record(letter)
    if args.json:
        print(json_text(record))
        return EXIT_OK
    event = record["event"]
    rows = [
        ("subscription", letter.subscription_id),
        ("position", str(letter.global_position)),
        ("event", f"{letter.event_type} v{event['event_version']} (id {letter.event_id})"),
        (
            "aggregate",
            f"{letter.aggregate_type} {letter.aggregate_id} v{event['aggregate_version']}",
        ),
        ("recorded", f"{_utc(event['recorded_at'])}"),
        ("attempts", str(letter.attempts)),
        ("parked", f"{short_time(letter.parked_at)} UTC"),
        ("last failed", f"{short_time(letter.last_failed_at)} UTC"),
        ("error", letter.error),
    ]
    for extra in ("causation_id", "correlation_id", "user_id"):
        if event.get(extra):
            rows.append((extra.replace("_", " "), str(event[extra])))
    if event.get("metadata"):
        rows.append(("metadata", json.dumps(event["metadata"], ensure_ascii=False)))
    lines = [f"{name:<13} {_indent(_safe(value), 14)}" for name, value in rows]
    payload = json.dumps(event["payload"], indent=2, ensure_ascii=False, default=str)
    lines.append(f"{'payload':<13} {_indent(_safe(payload), 14)}")
    lines.append("traceback")
    lines.append(_indent(_safe(letter.traceback.rstrip("\n")), 2, first=True))
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _safe(text: str) -> str:
    """Stored text for the terminal: control characters escaped, line breaks kept."""
    return safe_text(text, keep_newlines=True)


def _utc(iso: str | None) -> str:
    if iso is None:
        return "-"
    from datetime import datetime

    return short_time(datetime.fromisoformat(iso)) + " UTC"


def _indent(text: str, width: int, *, first: bool = False) -> str:
    lines = text.splitlines() or [""]
    pad = " " * width
    head = pad + lines[0] if first else lines[0]
    return "\n".join([head, *(pad + line if line else line for line in lines[1:])])


# -- discard -----------------------------------------------------------------------------------


async def run_discard(args: argparse.Namespace) -> int:
    """Delete one parked event (or --all of a subscription, with --yes); exit 3 if none."""
    if args.discard_all:
        if args.subscription is not None or args.position is not None:
            raise UsageError("give either SUBSCRIPTION POSITION or --all --subscription ID")
        if args.all_subscription is None:
            raise UsageError("--all needs --subscription ID (the subscription to empty)")
        if not args.yes:
            raise UsageError(
                f"--all discards every parked event of subscription {args.all_subscription!r} "
                "without handling them; add --yes to proceed"
            )
        async with _queue(args) as queue:
            count = await queue.discard_all(args.all_subscription)
        if not count:
            note(f"no parked events for subscription {args.all_subscription!r}")
            return EXIT_CHECK_FAILED
        print(f"discarded {_letters(count)} of subscription {args.all_subscription!r}")
        return EXIT_OK
    if args.yes or args.all_subscription is not None:
        raise UsageError("--subscription and --yes go with --all")
    if args.subscription is None or args.position is None:
        raise UsageError("give SUBSCRIPTION POSITION, or --all --subscription ID --yes")
    async with _queue(args) as queue:
        removed = await queue.discard(args.subscription, args.position)
    if not removed:
        return _not_parked(args.subscription, args.position)
    print(
        f"discarded the event at position {args.position} parked for subscription "
        f"{args.subscription!r} (not handled)"
    )
    return EXIT_OK


def _letters(count: int) -> str:
    return f"{count} parked event{'s' if count != 1 else ''}"


# -- retry -------------------------------------------------------------------------------------


async def run_retry(args: argparse.Namespace) -> int:
    """Hand a parked event to the application's projection once more.

    Exit 0 when handled (the letter is gone), 3 when the handler failed again or nothing is
    parked there, 1 when ``--projection`` cannot be imported or built.
    """
    from ..errors import InvalidInputError

    try:
        projection = await load_projection(args.projection)
    except ProjectionImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    subscription: str = args.subscription
    position: int = args.position
    async with _queue(args) as queue:
        if await queue.get(subscription, position) is None:
            return _not_parked(subscription, position)
        try:
            handled = await queue.retry(subscription, position, projection)
        except InvalidInputError:  # parked no more: retried or discarded meanwhile
            return _not_parked(subscription, position)
        after = None if handled else await queue.get(subscription, position)
    if handled:
        print(
            f"handled the event at position {position} parked for subscription "
            f"{subscription!r} with {args.projection}; removed it from the dead letters"
        )
        return EXIT_OK
    error = safe_text(first_line(after.error)) if after is not None else "unknown error"
    attempts = f" (attempt {after.attempts})" if after is not None else ""
    print(
        f"error: the handler failed again{attempts}: {error}; the event stays parked "
        f"(traceback: `{COMMAND} show {shlex.quote(subscription)} {position}`)",
        file=sys.stderr,
    )
    return EXIT_CHECK_FAILED


async def load_projection(spec: str) -> AnyProjection:
    """The projection ``module:attribute`` names: a Projection or TransactionalProjection
    subclass (created with no arguments), an instance, or a no-argument callable (sync or
    async) returning one. Raises :class:`ProjectionImportError` with a one-line message."""
    from ..projections import Projection, TransactionalProjection

    kinds = (Projection, TransactionalProjection)
    module_name, _, attribute = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: the application's own modules import
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise ProjectionImportError(
                f"cannot import --projection {spec}: no module named {exc.name!r} (the current "
                f"directory {cwd} and PYTHONPATH are searched; run from your application's "
                "folder or set PYTHONPATH)"
            ) from None
        raise ProjectionImportError(
            f"cannot import --projection {spec}: importing {module_name!r} failed: {_one_line(exc)}"
        ) from None
    except Exception as exc:
        raise ProjectionImportError(
            f"cannot import --projection {spec}: importing {module_name!r} failed: {_one_line(exc)}"
        ) from None
    target: Any = module
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ProjectionImportError(
                f"cannot import --projection {spec}: module {module_name!r} has no attribute "
                f"{attribute!r}"
            ) from None
    if isinstance(target, kinds):
        return target
    if not callable(target):
        raise ProjectionImportError(
            f"--projection {spec} is a {type(target).__name__}, not a Projection or "
            "TransactionalProjection subclass, instance, or function returning one"
        )
    if isinstance(target, type) and not issubclass(target, kinds):
        raise ProjectionImportError(
            f"--projection {spec} is the class {target.__qualname__}, which is not a "
            "subclass of Projection or TransactionalProjection"
        )
    try:
        built = target()
        if inspect.isawaitable(built):
            built = await built
    except Exception as exc:
        raise ProjectionImportError(
            f"cannot create the projection from --projection {spec} with no arguments: "
            f"{_one_line(exc)}"
        ) from None
    if not isinstance(built, kinds):
        raise ProjectionImportError(
            f"--projection {spec} returned a {type(built).__name__}, not a Projection or "
            "TransactionalProjection"
        )
    return built


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- shared ------------------------------------------------------------------------------------


@asynccontextmanager
async def _queue(args: argparse.Namespace) -> AsyncIterator[DeadLetterQueue]:
    """A DeadLetterQueue on the command's database."""
    from ..projections import DeadLetterQueue

    if not getattr(args, "debug", False):
        # The queue logs discards and failed retries; the command says so itself.
        logging.getLogger("eventuali_pg.projections").setLevel(logging.ERROR)
    target = await resolve(args)
    # retry() reads the event on a second connection while it holds the letter's row lock.
    async with await open_store(target, pool_max_size=2) as store:
        yield DeadLetterQueue(store)


def _not_parked(subscription: str, position: int) -> int:
    print(
        f"error: no event at position {position} is parked for subscription {subscription!r} "
        f"(see `{COMMAND} list --subscription {shlex.quote(subscription)}`)",
        file=sys.stderr,
    )
    return EXIT_CHECK_FAILED
