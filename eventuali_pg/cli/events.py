"""``eventuali-pg events``: read a range of events, or one aggregate's history."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import EXIT_OK
from .output import (
    console,
    event_record,
    note,
    payload_text,
    plain,
    short_time,
    write_json_line,
)
from .target import open_store, resolve

if TYPE_CHECKING:
    from ..models import Event


async def run(args: argparse.Namespace) -> int:
    """Print the events after ``--from`` (or of ``--aggregate-id``), at most ``--limit``."""
    target = await resolve(args)
    limit: int = args.limit
    start: int = args.from_position
    async with await open_store(target, pool_max_size=1) as store:
        if args.aggregate_id is not None:
            history = await store.load_events(args.aggregate_id)
            matching = [
                event
                for event in history
                if (event.global_position or 0) > start
                and (args.aggregate_type is None or event.aggregate_type in args.aggregate_type)
                and (args.event_type is None or event.event_type in args.event_type)
            ]
            events, more = matching[:limit], len(matching) > limit
        else:
            page = await store.load_events_from_position(
                start,
                limit + 1,
                aggregate_types=args.aggregate_type,
                event_types=args.event_type,
                replica=True,
            )
            events, more = page[:limit], len(page) > limit
        head = await store.get_global_position()
    if args.json:
        for event in events:
            write_json_line(event_record(event))
    else:
        _print_table(events)
    if not events:
        note(f"no matching events after position {start} (head is {head})")
    elif more:
        last = events[-1].global_position
        note(f"{len(events)} events shown; more after position {last}: add --from {last}")
    return EXIT_OK


def _print_table(events: list[Event]) -> None:
    from rich import box
    from rich.table import Table

    if not events:
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("position", justify="right", style="bold")
    table.add_column("recorded (UTC)", style="dim", no_wrap=True)
    table.add_column("aggregate", style="cyan", overflow="fold")
    table.add_column("v", justify="right", style="dim")
    table.add_column("event type", style="green", overflow="fold")
    table.add_column("payload", overflow="ellipsis", no_wrap=True, max_width=60)
    for event in events:
        table.add_row(
            str(event.global_position),
            short_time(event.recorded_at),
            plain(f"{event.aggregate_type} {event.aggregate_id}"),
            str(event.aggregate_version),
            plain(_type_and_version(event)),
            plain(payload_text(event, 60)),
        )
    console().print(table)


def _type_and_version(event: Event) -> str:
    """The event type, with ``(stored v1, read as v3)`` when upcasters brought it up to date."""
    if event.stored_event_version != event.event_version:
        return (
            f"{event.event_type} (stored v{event.stored_event_version}, read as "
            f"v{event.event_version})"
        )
    return event.event_type
