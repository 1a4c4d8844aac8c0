"""Formatting shared by the commands: event lines and records, JSON lines, rich consoles.

``rich`` is imported only inside the functions that need it, so ``--help`` and the JSON
outputs never pay for it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .parser import PROG

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ..models import Event


def note(message: str) -> None:
    """One line of information for the human at the terminal, on stderr."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): colours only on a terminal, honours NO_COLOR."""
    import os

    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's default raises SystemExit(1); main() turns this into a quiet exit 0.
            raise BrokenPipeError

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not os.environ.get("COLUMNS") and not _is_terminal(stream):
        width = WIDTH_WHEN_NOT_A_TERMINAL  # rich would squeeze tables into 80 columns
    return _Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


#: Width of tables written to a file or a pipe (rich's default of 80 squeezes them).
WIDTH_WHEN_NOT_A_TERMINAL = 160


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


#: Characters that must not reach a terminal raw: C0 and C1 controls (ESC starts ANSI escape
#: sequences), DEL, line and paragraph separators, and the invisible bidirectional overrides
#: that reorder text on screen.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEPING_NEWLINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` made safe for a terminal: control characters (ESC and so ANSI escape sequences,
    BEL, carriage returns, ...) and bidirectional overrides become visible escapes (``\\x1b``).

    Stored data (ids, payloads, errors) goes through here before it is printed, so it can
    never drive the terminal. With ``keep_newlines``, newlines and tabs stay as they are.
    """
    pattern = _UNSAFE_KEEPING_NEWLINES if keep_newlines else _UNSAFE
    return pattern.sub(_visible, str(text))


def plain(text: object) -> Text:
    """A rich ``Text`` of stored data: printed literally (no markup), terminal-safe."""
    from rich.text import Text

    return Text(safe_text(text))


def event_record(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict: :func:`eventuali_pg.event_to_record` (one shape for the
    command line and the web integration)."""
    from ..records import event_to_record

    return event_to_record(event)


def json_text(value: Any) -> str:
    """Compact JSON on one line (non-ASCII kept, unknown values as strings).

    JSON escapes C0 controls itself; the other characters that must not reach a terminal raw
    (DEL, C1 controls, line separators, bidirectional overrides) are written as ``\\uXXXX``
    escapes too: the same data for a JSON reader, harmless on a screen.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return _UNSAFE.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


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
    text = safe_text(
        json.dumps(event.payload(), separators=(", ", ": "), ensure_ascii=False, default=str)
    )
    if width is not None and len(text) > width:
        return text[: max(width - 1, 0)] + "…"
    return text


def event_line(event: Event) -> Text:
    """One human-readable line for ``event``: styled, its stored text printed literally."""
    from rich.text import Text

    return Text.assemble(
        (f"{event.global_position:>8}", "bold"),
        "  ",
        (short_time(event.recorded_at), "dim"),
        "  ",
        (safe_text(event.aggregate_type), "cyan"),
        " ",
        safe_text(event.aggregate_id),
        " ",
        (f"v{event.aggregate_version}", "dim"),
        "  ",
        (safe_text(event.event_type), "green"),
        "  ",
        payload_text(event, 200),
    )


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The ``fraction`` percentile (nearest rank) of already sorted values, None if empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]
