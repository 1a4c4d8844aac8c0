"""EventStore: the facade. Append events with a dense, commit-ordered global position; read them
back; let extensions (the live feed) follow every commit.

The work is done by the modules it delegates to: :mod:`.options` (settings), :mod:`.writer` and
:mod:`.appender` (saves), :mod:`.reader` (reads), :mod:`eventuali_pg._db` (connections and
driver errors), :mod:`eventuali_pg.codec` (events to rows and back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from .. import telemetry
from .._db import Connection, Connector, Pool, database_errors
from ..codec import require_decoded
from ..compat.store import UpstreamStoreMethods
from ..errors import (
    AggregateTypeMismatchError,
    StoreClosedError,
    SubjectForgottenError,
)
from ..models import Aggregate, Event, aggregate_type_of
from .appender import AppendResult, SaveUnit
from .forget import forget, new_subject_key
from .group_appends import GroupAppender
from .inline import InlineHandler, InlineProjection
from .keys import KeyRing
from .opening import checked_inline_projections, open_pool
from .options import DEFAULT_MAX_PAYLOAD_BYTES, StoreOptions
from .reader import EventReader
from .replica_reads import ReplicaReads, ReplicaStats
from .snapshots import SnapshotWriter, load_from_snapshot
from .sql import StoreSql, store_sql
from .transaction import TransactionScope, save_in_caller_transaction
from .units import events_of, prepare, unit_of
from .validation import check_aggregate_class, check_aggregates_to_save
from .writer import AppendWriter

if TYPE_CHECKING:
    from ..health import HealthReport
    from ..stream.feed import FeedStats

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "EventStore", "StoreResource", "StreamerLike"]

logger = logging.getLogger("eventuali_pg.store")

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R", bound="StoreResource")

#: Called with the new head after every append this store commits.
CommitListener = Callable[[int], None]


class StoreResource(Protocol):
    """Something an extension keeps per store (the live feed), closed with the store."""

    async def close(self) -> None:
        """Release what the resource holds."""


class StreamerLike(Protocol):
    """What :meth:`EventStore.attach_streamer` needs of a streamer."""

    async def attach(self, store: EventStore) -> None:
        """Start following ``store``."""

    async def detach(self, store: EventStore) -> None:
        """Stop following ``store``."""


class EventStore(UpstreamStoreMethods):
    """An event store in one PostgreSQL schema. Create it with :meth:`EventStore.create`.

    ``save`` appends an aggregate's uncommitted events and advances the global sequence in one
    transaction, so global positions are 1, 2, 3, ... with no holes, in commit order.
    """

    def __init__(self, connector: Connector, pool: Pool, options: StoreOptions) -> None:
        """Use :meth:`EventStore.create`; this wires an already opened pool."""
        self._connector = connector
        self._pool = pool
        self._options = options
        self._sql: StoreSql = store_sql(options.schema, options.notify_channel)
        self._keys = KeyRing(
            pool,
            options.schema,
            connector.dsn,
            size=options.key_cache_size,
            ttl=float(options.key_cache_ttl),
        )
        self._reader = EventReader(
            pool, self._sql, connector.dsn, page_size=options.page_size, keys=self._keys
        )
        self._replicas = (
            ReplicaReads(self._reader, self._sql, options) if options.replica_dsns else None
        )
        self._reader.replicas = self._replicas
        self._inline: list[InlineProjection] = []
        appends = GroupAppender(connector, pool, self._sql, self._inline)
        self._writer = AppendWriter(
            appends.run_group,
            self._group_done,
            max_events=options.max_batch_events,
            max_wait=float(options.max_batch_wait),
            run_waiting=appends.run_waiting,
        )
        self._commit_listeners: list[CommitListener] = []
        self._snapshots = SnapshotWriter(pool, self._sql, connector.dsn)
        self._resources: dict[str, StoreResource] = {}
        self._resource_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def create(
        cls,
        dsn: str | None = None,
        *,
        streamer: StreamerLike | None = None,
        inline_projections: Iterable[InlineHandler] = (),
        **options: Any,
    ) -> Self:
        """Connect to PostgreSQL and check that the schema is migrated.

        ``dsn`` defaults to ``EVENTUALI_PG_DSN``, then ``DATABASE_URL``. Options (see
        :class:`StoreOptions`): ``schema``, ``channel``, ``max_payload_bytes``,
        ``pool_min_size``, ``pool_max_size``, ``connect_timeout``, ``statement_cache_size``,
        ``notify``, ``poll_interval``, ``heartbeat_interval``, ``heartbeat_timeout``,
        ``page_size``, ``max_batch_events``, ``max_batch_wait``, ``listen_dsn``,
        ``replica_dsn``, ``replica_min_distance``, ``replica_max_lag``,
        ``replica_retry_interval`` (see "Scaling out" in the README). Raises
        :class:`ConfigurationError` for an unknown or invalid option,
        :class:`DatabaseUnavailableError` when the server cannot be reached and
        :class:`SchemaNotReadyError` when the schema is missing or outdated.

        With ``streamer`` every saved event (from any process) is published to it, in global
        order, exactly once. Concurrent saves are coalesced into one transaction of at most
        ``max_batch_events`` events; ``max_batch_wait`` seconds (default 0: never wait) lets a
        save wait for company.
        """
        inline = checked_inline_projections(inline_projections)
        connector, pool, settings = await open_pool(dsn, options)
        store = cls(connector, pool, settings)
        try:
            for projection in inline:
                store.add_inline_projection(projection)
        except BaseException:
            await store.close()
            raise
        if streamer is not None:
            try:
                await store.attach_streamer(streamer)
            except BaseException:
                await store.close()
                raise
        return store

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding the store's tables."""
        return self._sql.schema

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel appends notify on."""
        return self._sql.channel

    @property
    def dsn(self) -> str:
        """The DSN the store connects with."""
        return self._connector.dsn

    @property
    def options(self) -> StoreOptions:
        """The store's settings."""
        return self._options

    @property
    def connector(self) -> Connector:
        """How the store reaches its database (for direct sessions: LISTEN, leases)."""
        return self._connector

    @property
    def sql(self) -> StoreSql:
        """The store's SQL statements."""
        return self._sql

    @property
    def inline_projections(self) -> list[InlineProjection]:
        """The inline projections run inside every save's transaction."""
        return list(self._inline)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    # -- writing -------------------------------------------------------------------------------

    async def save(
        self,
        aggregate: Aggregate,
        *,
        connection: Connection | None = None,
        session: Any = None,
    ) -> int | None:
        """Append the aggregate's uncommitted events in one transaction.

        On success the events get their ``global_position`` and the aggregate's uncommitted list
        is cleared, and the global position of its last event is returned (None when it had no
        uncommitted events): wait for it to read your own write in a projection
        (``runner.wait_for_checkpoint(position)``) or hand it to a client. If another writer
        appended to the aggregate first, raises :class:`ConcurrencyError`; nothing is written
        and the aggregate keeps its events. Events with no correlation, causation or user id
        get those of the enclosing :func:`eventuali_pg.event_context`.

        With ``connection`` (an asyncpg connection inside the caller's transaction) or
        ``session`` (a SQLAlchemy ``AsyncSession`` on asyncpg, inside its transaction) the
        events are saved in that transaction and commit or roll back with it, and None is
        returned (positions are assigned at its commit): see "Events in your own transaction"
        in the README.
        """
        return await self.save_all([aggregate], connection=connection, session=session)

    async def save_all(
        self,
        aggregates: Iterable[Aggregate],
        *,
        connection: Connection | None = None,
        session: Any = None,
    ) -> int | None:
        """Append the uncommitted events of several aggregates in one transaction (all or none).

        Concurrent calls are coalesced into one transaction (one sequence advance, one NOTIFY,
        one disk flush) while each call keeps its own outcome; see ``max_batch_events``. A save
        whose caller is cancelled while it waits is withdrawn if it has not started; once
        started it completes (its events are stamped and its aggregates marked committed).
        Returns the highest global position written (None when there was nothing to save, or
        with ``connection``/``session``, as for :meth:`save`).
        """
        self._check_open()
        if connection is not None or session is not None:
            await save_in_caller_transaction(self, aggregates, connection, session)
            return None
        with telemetry.save_span(self.schema) as span:
            unit = await self.prepare(check_aggregates_to_save(aggregates))
            if unit is None:
                return None
            telemetry.describe_save(span, unit)
            try:
                await self._writer.submit(unit)
            except SubjectForgottenError:
                for subject, _ in unit.subjects:
                    self._keys.evict(subject)
                raise
            telemetry.describe_saved(span, unit)
        positions = [event.global_position for event in unit.events]
        return max((p for p in positions if p is not None), default=None)

    def transaction(self) -> TransactionScope:
        """``async with store.transaction() as tx:`` a READ COMMITTED transaction on a pooled
        connection: ``tx.connection`` for the application's SQL, ``await tx.save(aggregate)``
        for events. Commits when the block ends, rolls back if it raises; see
        :mod:`eventuali_pg.store.transaction`."""
        self._check_open()
        return TransactionScope(self)

    def _committed_elsewhere(self, head: int, units: list[SaveUnit]) -> None:
        """``units`` were committed up to ``head`` (by the writer or a store transaction): take
        the snapshots they call for, tell the commit listeners."""
        self._snapshots.consider(units)
        telemetry.count_appended(self.schema, units)
        for listener in list(self._commit_listeners):
            listener(head)

    def encode(self, aggregates: Iterable[Aggregate]) -> SaveUnit | None:
        """Validate and encode a save of ``aggregates`` (None when there is nothing to save).

        Events with personal fields need their subjects' keys: use :meth:`prepare`."""
        pending = check_aggregates_to_save(aggregates)
        limit = self._options.max_payload_bytes
        return unit_of(pending, events_of(pending), None, max_payload_bytes=limit)

    async def prepare(
        self, pending: list[tuple[Aggregate, list[Event]]], connection: Connection | None = None
    ) -> SaveUnit | None:
        """Encode checked ``pending`` events (see :mod:`eventuali_pg.store.units`), with
        their subjects' keys (created on ``connection``, the caller's transaction, if given)."""
        return await prepare(
            pending,
            self._keys,
            max_payload_bytes=self._options.max_payload_bytes,
            connection=connection,
        )

    def add_inline_projection(
        self,
        projection: InlineHandler,
        *,
        aggregate_type_filter: str | Collection[str] | None = None,
        event_type_filter: str | Collection[str] | None = None,
    ) -> None:
        """Run ``projection`` (a :class:`TransactionalProjection`) inside the transaction of
        every save that carries matching events, so its read model is never behind or ahead
        of them (see :mod:`eventuali_pg.store.inline`)."""
        self._inline.append(
            InlineProjection.of(
                projection,
                aggregate_type_filter=aggregate_type_filter,
                event_type_filter=event_type_filter,
            )
        )

    def _group_done(self, result: AppendResult) -> None:
        if result.head is not None:
            self._committed_elsewhere(result.head, result.committed)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(head)`` after every append this store commits (synchronously, in
        commit order; it must not block)."""
        self._commit_listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        """Stop calling ``listener``."""
        if listener in self._commit_listeners:
            self._commit_listeners.remove(listener)

    # -- personal data -------------------------------------------------------------------------

    async def forget(self, subject_id: str) -> int | None:
        """Erase the personal data of ``subject_id`` by destroying its key (crypto-shredding):
        events and positions stay, every read gives its personal fields erased
        (``event.erased_fields``), its snapshots go, saves of personal data for it raise
        :class:`SubjectForgottenError`, and projections get ``on_forget(subject_id)``. Returns
        the position of the ``SubjectForgotten`` event appended (None: already forgotten).
        See :mod:`eventuali_pg.store.forget` and "Security" in the README."""
        self._check_open()
        return await forget(self, subject_id)

    async def new_subject_key(self, subject_id: str) -> int:
        """Give a forgotten subject a new key, so personal data of it can be saved again
        (events written under the old key stay erased); returns the new key generation.
        Raises :class:`InvalidInputError` when the subject is not forgotten."""
        self._check_open()
        return await new_subject_key(self, subject_id)

    @property
    def keys(self) -> KeyRing:
        """The store's subject keys and their cache."""
        return self._keys

    # -- reading -------------------------------------------------------------------------------

    async def load(self, cls: type[A], aggregate_id: str) -> A | None:
        """Rebuild aggregate ``aggregate_id`` of class ``cls`` from its events (None if none).

        Raises :class:`AggregateTypeMismatchError` when ``aggregate_id`` is the id of another
        type of aggregate (its stored ``aggregate_type`` is not ``cls.get_aggregate_type()``),
        and :class:`DecodeError` when a stored event no longer fits its event class. With
        ``snapshot_every`` on the class, starts from the latest usable snapshot (see
        :mod:`eventuali_pg.store.snapshots`).
        """
        self._check_open()
        check_aggregate_class(cls)
        if cls.snapshot_every is not None:
            loaded = await load_from_snapshot(
                self._reader, self._pool, self._sql, self.dsn, cls, aggregate_id
            )
            if loaded is not None:
                return loaded
        events = await self.load_events(aggregate_id)
        if not events:
            return None
        expected, actual = aggregate_type_of(cls), events[0].aggregate_type
        if expected is not None and actual != expected:
            raise AggregateTypeMismatchError(
                f"aggregate {aggregate_id!r} is a {actual!r}, not a {expected!r}: its events were "
                f"saved by aggregate type {actual!r}. Load it with that aggregate class, or check "
                "where the id came from (to answer 'not found', catch AggregateTypeMismatchError)"
                f"; if {cls.__name__} was renamed, give it `aggregate_type = {actual!r}`",
                aggregate_id=aggregate_id,
                expected=expected,
                actual=actual,
            )
        return cls.from_events(require_decoded(event) for event in events)

    async def load_events(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """Events of one aggregate with a version above ``from_version``, oldest first."""
        self._check_open()
        return await self._reader.aggregate_events(aggregate_id, from_version)

    async def load_events_from_position(
        self,
        position: int,
        limit: int | None = None,
        *,
        aggregate_types: str | Iterable[str] | None = None,
        event_types: str | Iterable[str] | None = None,
        up_to: int | None = None,
        replica: bool = False,
    ) -> list[Event]:
        """Events with ``global_position > position`` (and ``<= up_to`` if given), ascending.

        Because positions are dense and commit-ordered, the result is complete: no event after
        ``position`` can appear later with a smaller position. Optional filters keep only the
        given aggregate types and/or event types (served by indexes). The whole result is held
        in memory: for long ranges give a ``limit``, or use :meth:`iter_events_from_position`.
        With ``replica=True`` (and ``replica_dsn`` given) the events are read from a replica
        while ``position`` is more than ``replica_min_distance`` behind the primary's head, and
        from the primary beyond the replica's head: the same result, with no gap or duplicate.
        """
        self._check_open()
        return await self._reader.after(
            position,
            limit,
            aggregate_types=aggregate_types,
            event_types=event_types,
            up_to=up_to,
            replica=replica,
        )

    def iter_events_from_position(
        self,
        position: int,
        *,
        aggregate_types: str | Iterable[str] | None = None,
        event_types: str | Iterable[str] | None = None,
        up_to: int | None = None,
        page_size: int | None = None,
        replica: bool = False,
    ) -> AsyncIterator[Event]:
        """Every event after ``position`` up to ``up_to`` (default: the head when iteration
        starts), read in pages of ``page_size`` rows (default: the store's ``page_size``), so
        any range fits in bounded memory: ``async for event in store.iter_events_from_position(0)``.
        ``replica=True`` reads pages from a replica as :meth:`load_events_from_position` does.
        """
        self._check_open()
        return self._reader.iterate(
            position,
            aggregate_types=aggregate_types,
            event_types=event_types,
            up_to=up_to,
            page_size=page_size,
            replica=replica,
        )

    def replica_stats(self) -> list[ReplicaStats]:
        """Each replica's figures as of its last read: head, lag behind the primary in events,
        available, reads, failures (empty without ``replica_dsn``)."""
        return self._replicas.stats() if self._replicas is not None else []

    async def check_replicas(self) -> list[ReplicaStats]:
        """Measure every replica's lag now (its counter row against the primary's)."""
        self._check_open()
        return await self._replicas.check() if self._replicas is not None else []

    async def get_global_position(self) -> int:
        """The highest committed global position; 0 when the store is empty."""
        self._check_open()
        return await self._reader.head()

    async def notification_queue_usage(self) -> float:
        """``pg_notification_queue_usage()``: the fraction (0 to 1) of the server's NOTIFY queue
        in use; near 1, a listener somewhere is not consuming and commits will soon fail."""
        self._check_open()
        return await self._reader.notification_queue_usage()

    async def get_aggregate_version(self, aggregate_id: str) -> int | None:
        """The current version of an aggregate, None when it has no events."""
        self._check_open()
        return await self._reader.aggregate_version(aggregate_id)

    async def get_stream_position_at(self, aggregate_id: str, up_to: int) -> int | None:
        """The aggregate's version among events at or below global position ``up_to``."""
        self._check_open()
        return await self._reader.aggregate_version_at(aggregate_id, up_to)

    # -- streaming ----------------------------------------------------------------------------

    async def attach_streamer(self, streamer: StreamerLike) -> None:
        """Publish every event saved from now on (by any process) to ``streamer``.

        The first attached streamer starts the store's feed: one LISTEN connection and one
        reader for all streamers of this store. A streamer follows one store; a store feeds any
        number of streamers.
        """
        self._check_open()
        await streamer.attach(self)

    async def detach_streamer(self, streamer: StreamerLike) -> None:
        """Stop publishing to ``streamer``; its receivers end."""
        await streamer.detach(self)

    async def resource(self, key: str, open_resource: Callable[[], Awaitable[R]]) -> R:
        """The store's resource ``key``, opened by ``open_resource`` the first time; closed
        with the store (for extensions such as the live feed)."""
        self._check_open()
        async with self._resource_lock:
            existing = self._resources.get(key)
            if existing is None:
                existing = await open_resource()
                self._resources[key] = existing
            return existing  # type: ignore[return-value]

    def existing_resource(self, key: str) -> StoreResource | None:
        """The resource ``key`` if it was opened."""
        return self._resources.get(key)

    @property
    def listener_pid(self) -> int | None:
        """Server process id of the LISTEN connection, None when not listening."""
        feed: Any = self._resources.get("feed")
        return feed.listener_pid if feed is not None else None

    def stats(self) -> FeedStats | None:
        """Delivery figures (reconnects, notifications, polls, reads); None with no streamer."""
        feed: Any = self._resources.get("feed")
        return feed.stats() if feed is not None else None

    async def health(
        self,
        *,
        max_lag: int | None = None,
        max_notification_queue_usage: float = 0.5,
        timeout: float = 5.0,
    ) -> HealthReport:
        """A typed :class:`~eventuali_pg.health.HealthReport`: database reachable, LISTEN
        connection up, published position against the head, the durable subscription furthest
        behind, notification queue usage, the live feed's last read error; ``report.healthy``
        and ``report.reasons``. ``max_lag``: more events than this behind the head (a
        subscription or the live feed) is unhealthy (None: lag never is). Never raises for an
        unreachable database: that is a reason in the report (after at most ``timeout`` s).
        """
        from ..health import check_health

        return await check_health(
            self,
            max_lag=max_lag,
            max_notification_queue_usage=max_notification_queue_usage,
            timeout=timeout,
        )

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Borrow a pooled connection for the block (``async with store.connection() as conn``).

        Projections use it to write a read model and their checkpoint in one transaction. The
        connection goes back to the pool when the block ends (an open transaction is rolled
        back). Raises :class:`DatabaseUnavailableError` when no connection can be opened.
        """
        self._check_open()
        with database_errors(self.dsn):
            conn = await self._pool.acquire()
        try:
            yield conn
        finally:
            try:
                await conn.reset()  # whatever session state the block left (SET, LISTEN, locks)
            except Exception:  # a broken connection is closed by the pool on release
                logger.debug("resetting a lent connection failed", exc_info=True)
            finally:
                await self._pool.release(conn)

    # -- lifecycle -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(
                "this EventStore is closed; create a new one with EventStore.create()"
            )

    async def close(self) -> None:
        """Finish the saves already queued, stop the feed, close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._writer.close()
            await self._snapshots.close()
            resources, self._resources = list(self._resources.values()), {}
            for resource in reversed(resources):
                await resource.close()
            if self._replicas is not None:
                await self._replicas.close()
        finally:
            try:
                async with asyncio.timeout(10.0):
                    await self._pool.close()
            except TimeoutError:
                logger.warning("connections still busy after 10 s at close; terminating them")
                self._pool.terminate()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
