"""Value rules that upstream eventuali was lax about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import InvalidEventError


def refuse_naive(value: Any, *, what: str = "timestamp") -> Any:
    """The one rule for naive timestamps: refused, with the fix in the message.

    A datetime (or ISO 8601 string) without a time zone is ambiguous: upstream eventuali wrote
    UTC (``datetime.utcnow()``) but ``datetime.now()`` is local time, and guessing would shift
    events silently. Raises :class:`InvalidEventError` (a ``ValueError``, so pydantic reports it
    as a ``ValidationError``); other values are returned unchanged for pydantic to validate.
    """
    naive = isinstance(value, datetime) and value.tzinfo is None
    if isinstance(value, str):
        try:
            naive = datetime.fromisoformat(value).tzinfo is None
        except ValueError:
            return value
    if naive:
        raise InvalidEventError(
            f"{what} {value!r} has no time zone; eventuali-pg stores timezone-aware times only. "
            "Use datetime.now(timezone.utc) instead of datetime.utcnow(), or, for a naive UTC "
            "value, value.replace(tzinfo=timezone.utc)"
        )
    return value
