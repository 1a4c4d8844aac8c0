"""Who may use the console: a bearer token (or a login with it), and a CSRF token on actions.

Without a token (the default, bound to 127.0.0.1) every request is served. With one, each
request must carry ``Authorization: Bearer <token>`` or the session cookie the login form sets
(an HMAC of the token, HttpOnly, SameSite=Strict); browsers are sent to ``/login``, other
clients get 401. Every form that changes something also carries the console's CSRF token
(random per process), so another web site cannot post to a console on localhost.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "eventuali_console"

#: Paths served without a token (the login form itself).
OPEN_PATHS = frozenset({"/login"})

#: Hosts that need no token: the loopback interface only.
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address or name (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    """The login cookie's value for ``token`` (an HMAC, never the token itself)."""
    return hmac.new(token.encode(), b"eventuali-pg console session", hashlib.sha256).hexdigest()


def safe_next(target: str | None) -> str:
    """A redirect target inside the console (``/...``), else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _cookies(header: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            found[key] = value
    return found


def authorized(scope: Scope, token: str) -> bool:
    """True when the request carries the bearer token or the login cookie."""
    authorization = _header(scope, b"authorization") or ""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    cookie = _cookies(_header(scope, b"cookie")).get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


class TokenMiddleware:
    """Refuses requests without the token (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, token: str, open_paths: Iterable[str] = OPEN_PATHS):
        self._app = app
        self._token = token
        self._open = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open:
            await self._app(scope, receive, send)
            return
        if authorized(scope, self._token):
            await self._app(scope, receive, send)
            return
        accept = _header(scope, b"accept") or ""
        if scope["method"] == "GET" and "text/html" in accept:
            target = scope["path"] + (
                "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
            )
            location = "/login?next=" + quote(target, safe="")
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", location.encode()), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps(
            {"error": "Unauthorized", "detail": "send Authorization: Bearer <token>"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="eventuali-pg console"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
