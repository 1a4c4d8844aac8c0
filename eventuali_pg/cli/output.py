"""Formatting shared by the commands: event lines and records, JSON lines, rich consoles.

``rich`` is imported only inside the functions that need it, so ``--help`` and the JSON
outputs never pay for it.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .parser import PROG

if TYPE_CHECKING:
    from rich.console import Console

    from ..models import Event


def note(message: str) -> None:
    """One line of information for the human at the terminal, on stderr."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): colours only on a terminal, honours NO_COLOR."""
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not os.environ.get("COLUMNS") and not _is_terminal(stream):
        width = WIDTH_WHEN_NOT_A_TERMINAL  # rich would squeeze tables into 80 columns
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


#: Width of tables written to a file or a pipe (rich's default of 80 squeezes them).
WIDTH_WHEN_NOT_A_TERMINAL = 160


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def event_record(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict: its envelope, ``metadata`` and ``payload``."""
    return {
        "global_position": event.global_position,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "aggregate_version": event.aggregate_version,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "event_id": str(event.event_id),
        "timestamp": _iso(event.timestamp),
        "recorded_at": _iso(event.recorded_at),
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "user_id": event.user_id,
        "metadata": event.metadata,
        "payload": event.payload(),
    }


def json_text(value: Any) -> str:
    """Compact JSON on one line (non-ASCII kept, unknown values as strings)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def write_json_line(value: Any) -> None:
    """Write ``value`` as one JSON line on stdout and flush (for pipes)."""
    sys.stdout.write(json_text(value) + "\n")
    sys.stdout.flush()


def short_time(moment: datetime | None) -> str:
    """``2024-05-01 12:03:04.123`` in UTC, or ``-``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def payload_text(event: Event, width: int | None = None) -> str:
    """The payload as compact JSON, cut to ``width`` characters with an ellipsis."""
    text = json.dumps(event.payload(), separators=(", ", ": "), ensure_ascii=False, default=str)
    if width is not None and len(text) > width:
        return text[: max(width - 1, 0)] + "…"
    return text


def event_markup(event: Event) -> str:
    """One human-readable line for ``event``, with rich markup (escaped where needed)."""
    from rich.markup import escape

    return (
        f"[bold]{event.global_position:>8}[/]  [dim]{short_time(event.recorded_at)}[/]  "
        f"[cyan]{escape(event.aggregate_type)}[/] {escape(event.aggregate_id)} "
        f"[dim]v{event.aggregate_version}[/]  [green]{escape(event.event_type)}[/]  "
        f"{escape(payload_text(event, 200))}"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (nearest rank) of already sorted values, None if empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]
