"""StoreLifespan: the event store, its live feed and its projection runners for the lifetime of
an ASGI application (FastAPI or Starlette).

Start-up, in order: migrate (if asked), open the store with one :class:`EventStreamer` for the
application's event streams, run ``on_startup(store)`` (the application's own tables), start
the projection runners, hook the server's SIGTERM/SIGINT handlers.

Shut-down, in order:

1. the server is told to stop (SIGTERM/SIGINT, noticed through the hook; or
   :meth:`StoreLifespan.begin_shutdown`): every event stream ends at once (the streamer is
   closed, so each server-sent-events response finishes cleanly) and new streams are refused
   with 503;
2. the server waits for the open responses, which now finish, and runs the lifespan shutdown;
3. the projection runners stop (the batch in progress finishes, the checkpoint is written, the
   lease is released), then the store closes (queued saves complete, connections close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from .._tasks import cancel_and_wait
from ..errors import ConfigurationError
from ..projections.runner import ProjectionRunner
from ..store.event_store import EventStore
from ..stream.streamer import EventStreamer
from ._signals import ServerSignalHook

logger = logging.getLogger("eventuali_pg.web")

__all__ = ["STATE_KEY", "StoreLifespan"]

#: Where the lifespan puts itself: ``app.state.eventuali`` and the lifespan state (so
#: ``request.state.eventuali``).
STATE_KEY = "eventuali"

RunnerFactory = Callable[[EventStore], ProjectionRunner]
StartupHook = Callable[[EventStore], Awaitable[None]]


class StoreLifespan:
    """``FastAPI(lifespan=StoreLifespan(...))``: opens the store at start-up, closes it at
    shut-down, and ends every event stream as soon as the server is asked to stop.

    ``dsn``: PostgreSQL URL (default ``EVENTUALI_PG_DSN``, then ``DATABASE_URL``;
    ``postgresql+asyncpg://`` URLs are accepted). ``migrate``: run the event store's migrations
    first (safe from several workers at once; default False, since many deployments migrate
    in a release step). ``schema`` and ``store_options``: passed to :meth:`EventStore.create`.
    ``on_startup``: ``async def setup(store)`` run before the projections start (create the
    application's read-model tables here, or better in the application's own alembic).
    ``projections``: functions ``store -> ProjectionRunner``; each runner is started after
    ``on_startup`` and stopped before the store closes. ``stream_capacity``: buffer of each
    event stream's receiver. ``hook_signals``: chain the server's SIGTERM/SIGINT handlers to end
    the streams when the server is told to stop (default True; with a server that does not use
    Python signal handlers, call :meth:`begin_shutdown` yourself).

    It can also be entered inside an application's own lifespan:
    ``async with lifespan(app) as state: ... yield state``.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        migrate: bool = False,
        schema: str = "eventuali",
        store_options: Mapping[str, Any] | None = None,
        on_startup: StartupHook | None = None,
        projections: Sequence[RunnerFactory] = (),
        stream_capacity: int = 1000,
        hook_signals: bool = True,
    ) -> None:
        if not isinstance(migrate, bool):
            raise ConfigurationError(f"migrate must be True or False, got {migrate!r}")
        for factory in projections:
            if not callable(factory):
                raise ConfigurationError(
                    "projections takes functions store -> ProjectionRunner (e.g. "
                    "`lambda store: ProjectionRunner(store, MyProjection(), subscription_id=...)`)"
                    f", got {factory!r}"
                )
        self._dsn = dsn
        self._migrate = migrate
        self._schema = schema
        self._store_options = dict(store_options or {})
        self._on_startup = on_startup
        self._factories = list(projections)
        self._stream_capacity = stream_capacity
        EventStreamer(capacity=stream_capacity)  # validates the capacity now
        self._hook_signals = hook_signals
        self._store: EventStore | None = None
        self._streamer: EventStreamer | None = None
        self._runners: list[ProjectionRunner] = []
        self._shutting_down: asyncio.Event | None = None
        self._running = False

    # -- what endpoints use ---------------------------------------------------------------------

    @property
    def store(self) -> EventStore:
        """The open store (raises :class:`ConfigurationError` outside the app's lifetime)."""
        if self._store is None:
            raise ConfigurationError(
                "the event store is not open: StoreLifespan opens it when the application starts "
                "(FastAPI(lifespan=StoreLifespan(...))); is the lifespan enabled in the server "
                "(uvicorn --lifespan on/auto) and did start-up succeed?"
            )
        return self._store

    @property
    def streamer(self) -> EventStreamer:
        """The streamer the application's event streams subscribe on."""
        self.store  # noqa: B018 - the same error when not started
        assert self._streamer is not None
        return self._streamer

    @property
    def runners(self) -> list[ProjectionRunner]:
        """The projection runners, in the order of ``projections``."""
        return list(self._runners)

    def runner(self, subscription_id: str) -> ProjectionRunner:
        """The runner of ``subscription_id``; :class:`ConfigurationError` if there is none."""
        for runner in self._runners:
            if subscription_id in (runner.subscription_id, runner.checkpoint_id):
                return runner
        raise ConfigurationError(
            f"no projection runner with subscription id {subscription_id!r} in this "
            f"StoreLifespan; running: {[r.subscription_id for r in self._runners] or 'none'}"
        )

    @property
    def shutting_down(self) -> bool:
        """True once the server was told to stop (or :meth:`begin_shutdown` was called)."""
        return self._shutting_down is not None and self._shutting_down.is_set()

    async def wait_for_shutdown(self) -> None:
        """Return when the server is told to stop (for the application's own long requests)."""
        if self._shutting_down is None:
            raise ConfigurationError("the StoreLifespan has not started")
        await self._shutting_down.wait()

    def begin_shutdown(self) -> None:
        """End every event stream now and refuse new ones (idempotent; call it from the event
        loop's thread). Done automatically on SIGTERM/SIGINT and at the lifespan shutdown."""
        if self._shutting_down is not None and not self._shutting_down.is_set():
            logger.info("shutting down: ending every event stream")
            self._shutting_down.set()

    # -- the lifespan ---------------------------------------------------------------------------

    def __call__(self, app: Any) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        """The lifespan context of ``app`` (what FastAPI and Starlette call)."""
        return self._lifespan(app)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        if self._running:
            raise ConfigurationError(
                "this StoreLifespan is already running; create one StoreLifespan per application"
            )
        self._running = True
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._start(stack)
                state = getattr(app, "state", None)
                if state is not None:
                    setattr(state, STATE_KEY, self)
                try:
                    yield {STATE_KEY: self}
                finally:
                    self.begin_shutdown()
        finally:
            self._running = False
            self._store = self._streamer = None
            self._runners = []

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        from .._dsn import resolve_dsn

        dsn = resolve_dsn(self._dsn)
        if self._migrate:
            from ..migration import migrate

            await migrate(dsn, schema=self._schema)
        streamer = EventStreamer(capacity=self._stream_capacity)
        store = await EventStore.create(
            dsn, schema=self._schema, streamer=streamer, **self._store_options
        )
        stack.push_async_callback(self._close_store, store)
        self._store, self._streamer = store, streamer
        if self._on_startup is not None:
            await self._on_startup(store)
        for factory in self._factories:
            runner = factory(store)
            if not isinstance(runner, ProjectionRunner):
                raise ConfigurationError(
                    f"projections: {factory!r} returned {type(runner).__name__}, not a "
                    "ProjectionRunner"
                )
            await runner.start()
            stack.push_async_callback(runner.stop)
            self._runners.append(runner)
        loop = asyncio.get_running_loop()
        self._shutting_down = asyncio.Event()
        closer = asyncio.create_task(
            self._end_streams_at_shutdown(streamer), name="eventuali_pg web: end streams"
        )
        stack.push_async_callback(self._await_closer, closer)
        if self._hook_signals:
            hook = ServerSignalHook(loop, self.begin_shutdown)
            hook.install()
            stack.callback(hook.remove)

    async def _end_streams_at_shutdown(self, streamer: EventStreamer) -> None:
        assert self._shutting_down is not None
        await self._shutting_down.wait()
        await streamer.close()

    async def _await_closer(self, closer: asyncio.Task[None]) -> None:
        self.begin_shutdown()
        try:
            async with asyncio.timeout(5.0):
                await asyncio.shield(closer)
        except TimeoutError:
            logger.warning("ending the event streams took more than 5 s; cancelling")
        await cancel_and_wait(closer)

    @staticmethod
    async def _close_store(store: EventStore) -> None:
        await store.close()
