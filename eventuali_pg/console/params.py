"""Reading requests: query parameters and the forms the console's pages post."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request

#: The largest position or count a query parameter may give (a PostgreSQL bigint).
MAX_POSITION = 2**63 - 1
MAX_LIMIT = 500


def int_param(
    request: Request, name: str, default: int, low: int = 0, high: int = MAX_POSITION
) -> int:
    """Query parameter ``name`` as an int in [low, high]; 400 otherwise."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise HTTPException(400, f"{name} must be from {low} to {high}, got {value}")
    return value


def text_param(request: Request, name: str) -> str | None:
    """Query parameter ``name`` as given (ids are exact: ``" x"`` is not ``"x"``), None when
    absent or empty."""
    return request.query_params.get(name) or None


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the console's forms send)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}
