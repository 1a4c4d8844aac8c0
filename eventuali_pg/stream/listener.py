"""The dedicated LISTEN connection: notices new appends, survives connection loss.

One connection per store, never taken from a pool (a pool runs ``UNLISTEN *`` on release). It
only rings a doorbell: the feed reads the table. A termination callback and a heartbeat under a
timeout detect a dead connection; reconnects back off with jitter, and every successful LISTEN
wakes the feed so anything missed meanwhile is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .. import telemetry
from .._db import Connection, Connector, close_or_terminate, watch_connection
from .._tasks import cancel_and_wait
from ..errors import DatabaseUnavailableError, SessionUnavailableError
from .backoff import Backoff

logger = logging.getLogger("eventuali_pg.listener")

#: application_name of LISTEN connections, so monitoring can tell them apart.
LISTENER_APPLICATION_NAME = "eventuali_pg_listener"


class NotificationListener:
    """Keeps one connection LISTENing on ``channel``; calls ``on_wake(head)`` for each doorbell.

    ``head`` is the position from the notification payload, or None after a (re)connect, when
    anything may have been missed.
    """

    def __init__(
        self,
        connector: Connector,
        channel: str,
        on_wake: Callable[[int | None], None],
        *,
        heartbeat_interval: float,
        heartbeat_timeout: float,
    ) -> None:
        self._connector = connector
        self._channel = channel
        self._on_wake = on_wake
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._first_attempt_done = asyncio.Event()
        self._first_error: BaseException | None = None
        self._connection: Connection | None = None
        self.reconnects = 0
        self.notifications = 0
        self.heartbeats = 0

    @property
    def listening(self) -> bool:
        """True while LISTEN is active on a live connection."""
        return self._listening.is_set()

    @property
    def backend_pid(self) -> int | None:
        """Server process id of the LISTEN connection (for monitoring and tests)."""
        connection = self._connection
        return connection.get_server_pid() if connection is not None else None

    async def start(self) -> None:
        """Start listening; return once LISTEN is active (raise if the first connect fails)."""
        self._task = asyncio.create_task(self._run(), name=f"eventuali_pg listener {self._channel}")
        await self._first_attempt_done.wait()
        if self._first_error is not None:
            await self.close()
            raise self._first_error

    async def wait_listening(self) -> None:
        """Wait until LISTEN is active (again)."""
        await self._listening.wait()

    async def close(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._drop_connection()

    async def _run(self) -> None:
        backoff = Backoff(initial=0.05, maximum=5.0)
        first = True
        while True:
            terminated = asyncio.Event()
            try:
                await self._connect(terminated)
            except Exception as exc:  # any failure to connect is retried; the first is reported
                await self._drop_connection()
                if first:
                    self._first_error = (
                        exc
                        if isinstance(exc, (DatabaseUnavailableError, SessionUnavailableError))
                        else (
                            DatabaseUnavailableError(
                                f"cannot LISTEN on channel {self._channel!r}: {exc}"
                            )
                        )
                    )
                    self._first_attempt_done.set()
                    return
                delay = backoff.next_delay()
                logger.warning("LISTEN connection failed (%s); reconnecting in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if first:
                first = False
                self._first_attempt_done.set()
            else:
                self.reconnects += 1
                telemetry.reconnected(self._channel)
                logger.info("LISTEN connection re-established on channel %r", self._channel)
            backoff.reset()
            self._on_wake(None)
            reason = await self._watch(terminated)
            logger.warning("LISTEN connection lost (%s); reconnecting", reason)
            self._listening.clear()
            await self._drop_connection()
            await asyncio.sleep(backoff.next_delay())

    async def _connect(self, terminated: asyncio.Event) -> None:
        connection = await self._connector.direct_session(
            purpose=f"LISTEN on channel {self._channel!r}",
            application_name=LISTENER_APPLICATION_NAME,
        )
        self._connection = connection
        connection.add_termination_listener(lambda _conn: terminated.set())
        await connection.add_listener(self._channel, self._notified)
        self._listening.set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        try:
            head: int | None = int(payload)
        except ValueError:
            head = None
        self._on_wake(head)

    async def _watch(self, terminated: asyncio.Event) -> str:
        """Return why the connection is considered dead: termination or failed heartbeat."""
        assert self._connection is not None
        return await watch_connection(
            self._connection,
            terminated,
            interval=self._heartbeat_interval,
            timeout=self._heartbeat_timeout,
            on_heartbeat=self._count_heartbeat,
        )

    def _count_heartbeat(self) -> None:
        self.heartbeats += 1

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._listening.clear()
        await close_or_terminate(connection, 1.0)
