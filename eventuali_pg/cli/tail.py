"""``eventuali-pg tail``: follow the event stream live, like ``tail -f``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import EXIT_OK
from .output import console, event_line, event_record, note, write_json_line
from .target import open_store, resolve

if TYPE_CHECKING:
    from ..models import Event

TAIL_SUBSCRIPTION_ID = "eventuali-pg-tail"


async def run(args: argparse.Namespace) -> int:
    """Print matching events as they are saved until Ctrl-C, --limit, or a closed pipe."""
    from ..stream import EventStreamer, Subscription

    target = await resolve(args)
    streamer = EventStreamer(capacity=1000)
    subscription = Subscription(
        id=TAIL_SUBSCRIPTION_ID,
        aggregate_type_filter=args.aggregate_type,
        event_type_filter=args.event_type,
        from_position=args.from_position,
    )
    aggregate_id: str | None = args.aggregate_id
    limit: int | None = args.limit
    async with await open_store(target, streamer=streamer) as store:
        receiver = await streamer.subscribe(subscription)
        # On stderr, so it never mixes with --json lines; printed once the subscription is
        # active, so whatever is saved after this line appears is printed.
        start = args.from_position
        where = (
            f"after position {start}"
            if start is not None
            else f"new events (head is {await store.get_global_position()})"
        )
        note(f"following {where} in schema {target.schema!r}; Ctrl-C to stop")
        show = _json_printer() if args.json else _text_printer()
        shown = 0
        async with receiver:
            async for item in receiver:
                if aggregate_id is not None and item.event.aggregate_id != aggregate_id:
                    continue
                show(item.event)
                shown += 1
                if limit is not None and shown >= limit:
                    break
    return EXIT_OK


def _json_printer() -> Callable[[Event], None]:
    def show(event: Event) -> None:
        write_json_line(event_record(event))

    return show


def _text_printer() -> Callable[[Event], None]:
    out = console()

    def show(event: Event) -> None:
        out.print(event_line(event), soft_wrap=True)

    return show
