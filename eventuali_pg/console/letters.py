"""Dead letters in the console: list, show (error and traceback), and, with ``allow_actions``,
retry and discard, each asked for on a confirmation page and posted with the CSRF token.

Retrying needs the application's projection: the console gets one per subscription id
(``eventuali-pg console --projection SUBSCRIPTION=module:attribute``); the retry itself is
:meth:`DeadLetterQueue.retry`, as in ``eventuali-pg dead-letters retry``.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..cli.dead_letters import first_line
from ..errors import InvalidInputError
from ..projections.dead_letters import DeadLetterQueue
from .app import get_console
from .params import form

if TYPE_CHECKING:
    from ..projections.dead_letters import DeadLetter

ACTIONS = ("retry", "discard")


def letter_routes() -> list[Route]:
    """The dead-letter routes."""
    return [
        Route("/dead-letters", listing),
        Route("/dead-letters/show", show),
        Route("/dead-letters/retry", act, methods=["GET", "POST"]),
        Route("/dead-letters/discard", act, methods=["GET", "POST"]),
    ]


def _letter_key(values: dict[str, str]) -> tuple[str, int]:
    subscription = values.get("subscription", "")  # exact: " s" is not "s"
    text = values.get("position", "").strip()
    # isdigit() alone is True for '²', which int() refuses.
    if (
        not subscription
        or not (text.isascii() and text.isdigit())
        or not 1 <= int(text) <= 2**63 - 1
    ):
        raise HTTPException(400, "give subscription=ID and position=N (a global position >= 1)")
    return subscription, int(text)


async def listing(request: Request) -> Response:
    """Parked events, newest subscription first, at most 200."""
    console = get_console(request)
    subscription = request.query_params.get("subscription") or None
    try:
        letters = await DeadLetterQueue(console.store).list(subscription, limit=201)
    except InvalidInputError as exc:
        raise HTTPException(400, str(exc)) from None
    return console.render(
        request,
        "dead_letters.html",
        letters=[(letter, first_line(letter.error)) for letter in letters[:200]],
        more=len(letters) > 200,
        subscription=subscription,
    )


async def _get(request: Request, key: tuple[str, int]) -> DeadLetter:
    try:
        letter = await DeadLetterQueue(get_console(request).store).get(*key)
    except InvalidInputError as exc:
        raise HTTPException(400, str(exc)) from None
    if letter is None:
        raise HTTPException(404, f"no event at position {key[1]} is parked for {key[0]!r}")
    return letter


async def show(request: Request) -> Response:
    """One parked event: the event, the error and its traceback, and the actions allowed."""
    console = get_console(request)
    letter = await _get(request, _letter_key(dict(request.query_params)))
    return console.render(
        request,
        "dead_letter.html",
        letter=letter,
        event_json=json.dumps(letter.event, indent=2, ensure_ascii=False, default=str),
        can_retry=letter.subscription_id in console.projections,
    )


async def act(request: Request) -> Response:
    """GET: the confirmation page; POST (with the CSRF token): retry or discard."""
    console = get_console(request)
    action = request.url.path.rsplit("/", 1)[-1]
    if not console.allow_actions:
        raise HTTPException(
            403, "actions are disabled: start the console with --allow-actions to retry or discard"
        )
    if request.method == "GET":
        key = _letter_key(dict(request.query_params))
        letter = await _get(request, key)
        return console.render(
            request,
            "confirm.html",
            letter=letter,
            action=action,
            can_retry=letter.subscription_id in console.projections,
        )
    fields = await form(request)
    if not hmac.compare_digest(fields.get("csrf", "").encode(), console.csrf.encode()):
        raise HTTPException(403, "the form is stale or did not come from this console; reload it")
    subscription, position = _letter_key(fields)
    queue = DeadLetterQueue(console.store)
    if action == "discard":
        done = await queue.discard(subscription, position)
        outcome = "discarded" if done else "gone"
        message = (
            f"Discarded the event at position {position} of {subscription} (not handled)."
            if done
            else f"No event at position {position} was parked for {subscription} any more."
        )
    else:
        projection = console.projections.get(subscription)
        if projection is None:
            raise HTTPException(
                400,
                f"no projection to retry {subscription!r} with: start the console with "
                f"--projection {subscription}=module:attribute",
            )
        try:
            handled = await queue.retry(subscription, position, projection)
        except InvalidInputError as exc:
            handled, outcome, message = False, "gone", str(exc)
        else:
            outcome = "handled" if handled else "failed"
            if handled:
                message = f"Handled the event at position {position} of {subscription}; removed."
            else:
                after = await queue.get(subscription, position)
                error = first_line(after.error) if after is not None else "unknown error"
                message = f"The handler failed again: {error}. The event stays parked."
    return console.render(
        request,
        "done.html",
        status_code=200 if outcome in ("handled", "discarded") else 409,
        outcome=outcome,
        message=message,
        subscription=subscription,
        position=position,
    )
