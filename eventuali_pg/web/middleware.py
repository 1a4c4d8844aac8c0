"""EventContextMiddleware: every event saved while handling a request carries its ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..context import event_context

__all__ = ["EventContextMiddleware"]

UserOf = Callable[[Scope], str | None]


class EventContextMiddleware:
    """Pure ASGI middleware (streams and disconnects pass through untouched) that runs each
    HTTP request inside :func:`eventuali_pg.event_context`:

    * ``correlation_id``: the request's ``request_id_header`` (default ``X-Request-ID``), or a
      new UUID when absent; echoed back in the response's same header;
    * ``user_id``: ``user_of(scope)`` if given (e.g. read from ``scope["state"]`` or a header
      your authentication set), else None.

    ``app.add_middleware(EventContextMiddleware, user_of=...)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_id_header: str = "x-request-id",
        user_of: UserOf | None = None,
    ) -> None:
        self.app = app
        self._header = request_id_header.lower().encode("latin-1")
        self._user_of = user_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", ()):
            if name.lower() == self._header:
                request_id = value.decode("latin-1").strip() or None
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        user_id = self._user_of(scope) if self._user_of is not None else None
        header = (self._header, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        with event_context(correlation_id=request_id, user_id=user_id):
            await self.app(scope, receive, send_with_id)
