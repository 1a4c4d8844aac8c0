"""Noticing that the server was asked to stop, before it waits for open responses.

uvicorn (and most ASGI servers) handle SIGTERM/SIGINT by closing their listening sockets and
then waiting for every open response to finish *before* running the lifespan shutdown. A
server-sent-events response never finishes on its own, so without help the server waits
forever. :class:`ServerSignalHook` chains a handler in front of the server's own signal
handlers: it tells the application (through the event loop, never in the signal handler
itself) and then calls the server's handler unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("eventuali_pg.web")

HOOKED_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any]


class ServerSignalHook:
    """Calls ``callback`` on the loop when SIGTERM or SIGINT arrives, then the previous
    handler. Only Python-level handlers are chained (those the server installed); the default
    and ignored dispositions are left alone. Installed and removed from the main thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._installed: dict[int, tuple[Handler, Handler]] = {}

    @property
    def installed(self) -> bool:
        """True when at least one signal is hooked."""
        return bool(self._installed)

    def install(self) -> None:
        """Chain in front of the current SIGTERM and SIGINT handlers."""
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not in the main thread: server signals are not hooked")
            return
        for sig in HOOKED_SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue
            handler = self._make_handler(previous)
            signal.signal(sig, handler)
            self._installed[sig] = (handler, previous)

    def _make_handler(self, previous: Handler) -> Handler:
        loop, callback = self._loop, self._callback

        def handler(signum: int, frame: FrameType | None) -> Any:
            if not loop.is_closed():
                loop.call_soon_threadsafe(callback)
            return previous(signum, frame)

        return handler

    def remove(self) -> None:
        """Put the previous handlers back (unless someone replaced ours since). Idempotent."""
        if threading.current_thread() is not threading.main_thread():
            return
        installed, self._installed = self._installed, {}
        for sig, (handler, previous) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)
