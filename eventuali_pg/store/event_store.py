"""EventStore: append events with a dense, commit-ordered global position; read them back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg

from .._dsn import resolve_dsn
from .._identifiers import validate_identifier
from ..compat.store import UpstreamStoreMethods
from ..errors import (
    ConcurrencyError,
    ConfigurationError,
    DatabaseUnavailableError,
    EventualiError,
    InvalidInputError,
    StoreClosedError,
)
from ..models import Aggregate, Event
from . import connection as db
from .append import AppendCoalescer, SaveUnit, append_arguments
from .codec import EncodedBatch, records_to_events
from .sql import DEFAULT_SCHEMA, StoreSql, store_sql
from .validation import (
    check_aggregate_id,
    check_aggregates_to_save,
    check_limit,
    check_name_filter,
    check_position,
)

if TYPE_CHECKING:
    from ..stream.feed import FeedOptions, FeedStats, StoreFeed
    from ..stream.streamer import EventStreamer

logger = logging.getLogger("eventuali_pg.store")

A = TypeVar("A", bound=Aggregate)

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

# Failures that mean "the server or the connection went away", as opposed to a refused statement.
_LOST_CONNECTION = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    # A pooled connection that has read the server's shutdown error but not yet the end of its
    # socket is not closed yet; the next query on it fails with "cannot switch to state ...;
    # another operation (2) is in progress" before anything is sent.
    asyncpg.InternalClientError,
)


class EventStore(UpstreamStoreMethods):
    """An event store in one PostgreSQL schema. Create it with :meth:`EventStore.create`.

    ``save`` appends an aggregate's uncommitted events and advances the global sequence in one
    transaction, so global positions are 1, 2, 3, ... with no holes, in commit order.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        sql: StoreSql,
        *,
        max_payload_bytes: int,
        feed_options: FeedOptions,
        max_batch_events: int = 1000,
        max_batch_wait: float = 0.0,
    ) -> None:
        """Use :meth:`EventStore.create`; this wires an already opened pool."""
        self._pool = pool
        self._dsn = dsn
        self._sql = sql
        self._max_payload_bytes = max_payload_bytes
        self._feed_options = feed_options
        self._feed: StoreFeed | None = None
        self._feed_lock = asyncio.Lock()
        self._closed = False
        self._coalescer = AppendCoalescer(
            self._append_group, max_events=max_batch_events, max_wait=max_batch_wait
        )

    @classmethod
    async def create(
        cls,
        dsn: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        channel: str | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        connect_timeout: float = 10.0,
        streamer: EventStreamer | None = None,
        notify: bool = True,
        poll_interval: float | None = None,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 5.0,
        page_size: int = 1000,
        max_batch_events: int = 1000,
        max_batch_wait: float = 0.0,
        **unknown: object,
    ) -> Self:
        """Connect to PostgreSQL and check that the schema is migrated.

        ``dsn`` defaults to ``EVENTUALI_PG_DSN``, then ``DATABASE_URL``. Tables live in PostgreSQL
        schema ``schema``; appends notify on ``channel`` (default: the schema name). Raises
        :class:`DatabaseUnavailableError` when the server cannot be reached and
        :class:`SchemaNotReadyError` when the schema is missing or outdated.

        With ``streamer`` every saved event (from any process) is published to it, in global
        order, exactly once. Delivery settings: ``notify`` (LISTEN for appends; False polls
        only, for transaction-pooling proxies), ``poll_interval`` (seconds between polls that
        back up lost notifications; default 1.0, or 0.2 without LISTEN),
        ``heartbeat_interval``/``heartbeat_timeout`` (checks of the LISTEN connection),
        ``page_size`` (rows per read).

        Concurrent saves are coalesced into one transaction of at most ``max_batch_events``
        events (1 turns coalescing off); ``max_batch_wait`` seconds (default 0: never wait) lets
        a save wait for company.
        """
        if "connection_string" in unknown and dsn is None:  # upstream eventuali's keyword
            dsn = unknown.pop("connection_string")  # type: ignore[assignment]
        if unknown:
            raise ConfigurationError(
                f"unknown EventStore option(s): {', '.join(sorted(unknown))}. Valid options: "
                "dsn, schema, channel, max_payload_bytes, pool_min_size, pool_max_size, "
                "connect_timeout, streamer, notify, poll_interval, heartbeat_interval, "
                "heartbeat_timeout, page_size, max_batch_events, max_batch_wait"
            )
        feed_options = _feed_options(
            notify=notify,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            page_size=page_size,
            connect_timeout=connect_timeout,
        )
        resolved = resolve_dsn(dsn)
        validate_identifier(schema, what="schema name")
        sql = store_sql(schema, channel if channel is not None else schema)
        _check_positive_int(max_payload_bytes, "max_payload_bytes")
        _check_positive_int(max_batch_events, "max_batch_events")
        if (
            isinstance(max_batch_wait, bool)
            or not isinstance(max_batch_wait, (int, float))
            or not 0 <= max_batch_wait <= 1
        ):
            raise ConfigurationError(
                f"max_batch_wait must be a number of seconds from 0 to 1, got {max_batch_wait!r}"
            )
        _check_positive_int(pool_max_size, "pool_max_size")
        if (
            isinstance(pool_min_size, bool)
            or not isinstance(pool_min_size, int)
            or not (0 <= pool_min_size <= pool_max_size)
        ):
            raise ConfigurationError(
                "pool_min_size must be an integer between 0 and pool_max_size, "
                f"got {pool_min_size!r}"
            )
        pool = await db.create_pool(
            resolved, min_size=pool_min_size, max_size=pool_max_size, timeout=connect_timeout
        )
        try:
            await _check_schema(pool, schema)
        except BaseException:
            await pool.close()
            raise
        store = cls(
            pool,
            resolved,
            sql,
            max_payload_bytes=max_payload_bytes,
            feed_options=feed_options,
            max_batch_events=max_batch_events,
            max_batch_wait=float(max_batch_wait),
        )
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
        return self._dsn

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    # -- writing -------------------------------------------------------------------------------

    async def save(self, aggregate: Aggregate) -> None:
        """Append the aggregate's uncommitted events in one transaction.

        On success the events get their ``global_position`` and the aggregate's uncommitted list
        is cleared. If another writer appended to the aggregate first, raises
        :class:`ConcurrencyError`; nothing is written and the aggregate keeps its events.
        """
        await self.save_all([aggregate])

    async def save_all(self, aggregates: Iterable[Aggregate]) -> None:
        """Append the uncommitted events of several aggregates in one transaction (all or none).

        Concurrent calls are coalesced into one transaction (one sequence advance, one NOTIFY,
        one disk flush) while each call keeps its own outcome; see ``max_batch_events``.
        """
        self._check_open()
        pending = check_aggregates_to_save(aggregates)
        if not pending:
            return
        batch = EncodedBatch()
        expected: list[int] = []
        events: list[Event] = []
        for aggregate, uncommitted in pending:
            expected.append(aggregate.version - len(uncommitted))
            events += uncommitted
        for event in events:
            batch.add(event, max_payload_bytes=self._max_payload_bytes)
        saved = [aggregate for aggregate, _ in pending]
        await self._coalescer.submit(SaveUnit(saved, expected, events, batch))
        for aggregate in saved:
            aggregate.mark_events_as_committed()

    async def _append_group(self, group: list[SaveUnit]) -> None:
        try:
            async with self._pool.acquire() as conn:
                await self._append_with(conn, group)
        except _LOST_CONNECTION as exc:
            raise DatabaseUnavailableError(
                f"lost the connection to PostgreSQL while saving ({exc}); the save may or may "
                "not have been committed: reload the aggregate to see, then retry if needed"
            ) from exc

    async def _append_with(self, conn: asyncpg.Connection, group: list[SaveUnit]) -> None:
        try:
            row = await conn.fetchrow(self._sql.append, *append_arguments(group, self.channel))
        except asyncpg.UniqueViolationError as exc:
            if len(group) > 1:
                # Another process raced one of these aggregates; judge each save on its own.
                for unit in group:
                    await self._append_with(conn, [unit])
                return
            if exc.constraint_name == "events_event_id_key":
                group[0].fail(
                    InvalidInputError(
                        f"an event id of this save is already stored ({exc.detail}); "
                        "every event needs a new event_id"
                    )
                )
            elif exc.constraint_name == "events_pkey":
                group[0].fail(
                    EventualiError(
                        f"global position already taken ({exc.detail}): rows were written to "
                        f"{self.schema}.events without advancing {self.schema}.global_sequence. "
                        "Write events only through EventStore, and set the sequence row to the "
                        "highest global_position before saving again"
                    )
                )
            else:
                group[0].fail(await self._concurrency_error(conn, group[0]))
            return
        rejected = set(row["rejected"])
        accepted = [unit for index, unit in enumerate(group) if index not in rejected]
        head = row["head"]
        position = (head or 0) - sum(len(unit.batch) for unit in accepted) + 1
        committed: list[Event] = []
        for unit in accepted:
            unit.succeed(position, row["recorded_at"])
            committed += unit.events
            position += len(unit.events)
        if committed and self._feed is not None:
            self._feed.publish_committed(committed)
        for index in sorted(rejected):
            group[index].fail(await self._concurrency_error(conn, group[index]))

    async def _concurrency_error(
        self, conn: asyncpg.Connection, unit: SaveUnit
    ) -> ConcurrencyError:
        ids = unit.aggregate_ids
        rows = await conn.fetch(self._sql.aggregate_versions, ids)
        actual = {row["aggregate_id"]: int(row["version"]) for row in rows}
        pairs = list(zip(ids, unit.expected_versions, strict=True))
        aggregate_id, expected_version = next(
            ((i, v) for i, v in pairs if actual.get(i, 0) != v), pairs[0]
        )
        actual_version = actual.get(aggregate_id, 0)
        return ConcurrencyError(
            f"aggregate {aggregate_id!r} was expected at version {expected_version} but is at "
            f"version {actual_version}: another writer saved first. Nothing was written; reload "
            "the aggregate, apply the command again and save",
            aggregate_id=aggregate_id,
            expected_version=expected_version,
            actual_version=actual_version,
        )

    # -- reading -------------------------------------------------------------------------------

    async def load(self, cls: type[A], aggregate_id: str) -> A | None:
        """Rebuild aggregate ``aggregate_id`` of class ``cls`` from its events (None if none)."""
        events = await self.load_events(aggregate_id)
        if not events:
            return None
        return cls.from_events(events)

    async def load_events(self, aggregate_id: str, from_version: int = 0) -> list[Event]:
        """Events of one aggregate with a version above ``from_version``, oldest first."""
        check_aggregate_id(aggregate_id)
        check_position(from_version, what="from_version")
        records = await self._fetch(self._sql.load_aggregate, aggregate_id, from_version)
        return records_to_events(records)

    async def load_events_from_position(
        self,
        position: int,
        limit: int | None = None,
        *,
        aggregate_types: str | Iterable[str] | None = None,
        event_types: str | Iterable[str] | None = None,
        up_to: int | None = None,
    ) -> list[Event]:
        """Events with ``global_position > position`` (and ``<= up_to`` if given), ascending.

        Because positions are dense and commit-ordered, the result is complete: no event after
        ``position`` can appear later with a smaller position. Optional filters keep only the
        given aggregate types and/or event types (served by indexes).
        """
        check_position(position)
        check_limit(limit)
        if up_to is not None:
            check_position(up_to, what="up_to")
        if limit == 0:
            return []
        aggregate_filter = check_name_filter(aggregate_types, what="aggregate_types")
        event_filter = check_name_filter(event_types, what="event_types")
        query = self._sql.read_from_position(
            aggregate_types=aggregate_filter is not None,
            event_types=event_filter is not None,
            upper_bound=up_to is not None,
            limit=limit is not None,
        )
        args: list[Any] = [position]
        args += [f for f in (aggregate_filter, event_filter, up_to, limit) if f is not None]
        return records_to_events(await self._fetch(query, *args))

    async def get_global_position(self) -> int:
        """The highest committed global position; 0 when the store is empty."""
        return int(await self._fetchval(self._sql.head))

    async def get_aggregate_version(self, aggregate_id: str) -> int | None:
        """The current version of an aggregate, None when it has no events."""
        check_aggregate_id(aggregate_id)
        value = await self._fetchval(self._sql.aggregate_version, aggregate_id)
        return int(value) if value is not None else None

    async def get_stream_position_at(self, aggregate_id: str, up_to: int) -> int | None:
        """The aggregate's version among events at or below global position ``up_to``."""
        check_aggregate_id(aggregate_id)
        check_position(up_to, what="up_to")
        value = await self._fetchval(self._sql.aggregate_version_at, aggregate_id, up_to)
        return int(value) if value is not None else None

    async def _read_after(self, position: int, limit: int) -> list[Event]:
        return records_to_events(
            await self._fetch(
                self._sql.read_from_position(
                    aggregate_types=False, event_types=False, upper_bound=False, limit=True
                ),
                position,
                limit,
            )
        )

    # -- streaming ----------------------------------------------------------------------------

    async def attach_streamer(self, streamer: EventStreamer) -> None:
        """Publish every event saved from now on (by any process) to ``streamer``.

        The first attached streamer starts the store's feed: one LISTEN connection and one
        reader for all streamers of this store. A streamer follows one store; a store feeds any
        number of streamers.
        """
        self._check_open()
        async with self._feed_lock:
            feed = self._feed
            if feed is None:
                from ..stream.feed import StoreFeed

                feed = StoreFeed(
                    dsn=self._dsn,
                    channel=self._sql.channel,
                    read_page=self._read_after,
                    head=await self.get_global_position(),
                    options=self._feed_options,
                )
                await feed.start()
                self._feed = feed
            streamer._attach_source(self, feed.published_position)
            feed.add(streamer)

    async def detach_streamer(self, streamer: EventStreamer) -> None:
        """Stop publishing to ``streamer``; its receivers end."""
        if self._feed is not None:
            self._feed.remove(streamer)
        streamer._detach_source(self)

    @property
    def listener_pid(self) -> int | None:
        """Server process id of the LISTEN connection, None when not listening."""
        feed = self._feed
        if feed is None or feed.listener is None:
            return None
        return feed.listener.backend_pid

    def stats(self) -> FeedStats | None:
        """Delivery figures (reconnects, notifications, polls, reads); None with no streamer."""
        return self._feed.stats() if self._feed is not None else None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """Borrow a pooled connection for the block (``async with store.connection() as conn``).

        Projections use it to write a read model and their checkpoint in one transaction. The
        connection goes back to the pool when the block ends (an open transaction is rolled
        back). Raises :class:`DatabaseUnavailableError` when no connection can be opened.
        """
        self._check_open()
        try:
            conn = await self._pool.acquire()
        except _LOST_CONNECTION as exc:
            raise db.unreachable(self._dsn, exc) from exc
        try:
            yield conn
        finally:
            try:
                await conn.reset()  # whatever session state the block left (SET, LISTEN, locks)
            finally:
                await self._pool.release(conn)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self._check_open()
        try:
            return list(await self._pool.fetch(query, *args))
        except _LOST_CONNECTION as exc:
            raise db.unreachable(self._dsn, exc) from exc

    async def _fetchval(self, query: str, *args: Any) -> Any:
        self._check_open()
        try:
            return await self._pool.fetchval(query, *args)
        except _LOST_CONNECTION as exc:
            raise db.unreachable(self._dsn, exc) from exc

    # -- lifecycle -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(
                "this EventStore is closed; create a new one with EventStore.create()"
            )

    async def close(self) -> None:
        """Close every connection of the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._coalescer.wait_idle()
        feed, self._feed = self._feed, None
        try:
            if feed is not None:
                await feed.close()
                for streamer in feed.streamers:
                    streamer._detach_source(self)
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


def _feed_options(
    *,
    notify: object,
    poll_interval: object,
    heartbeat_interval: object,
    heartbeat_timeout: object,
    page_size: object,
    connect_timeout: object,
) -> FeedOptions:
    from ..stream.feed import FeedOptions

    if not isinstance(notify, bool):
        raise ConfigurationError(f"notify must be True or False, got {notify!r}")
    if poll_interval is None:
        poll_interval = 1.0 if notify else 0.2
    seconds = {
        "poll_interval": poll_interval,
        "heartbeat_interval": heartbeat_interval,
        "heartbeat_timeout": heartbeat_timeout,
        "connect_timeout": connect_timeout,
    }
    for name, value in seconds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")
    _check_positive_int(page_size, "page_size")
    return FeedOptions(
        notify=notify,
        poll_interval=float(poll_interval),  # type: ignore[arg-type]
        heartbeat_interval=float(heartbeat_interval),  # type: ignore[arg-type]
        heartbeat_timeout=float(heartbeat_timeout),  # type: ignore[arg-type]
        page_size=page_size,  # type: ignore[arg-type]
        connect_timeout=float(connect_timeout),  # type: ignore[arg-type]
    )


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")


async def _check_schema(pool: asyncpg.Pool, schema: str) -> None:
    from ..migration import check_schema_revision

    command = (
        f"run `eventuali-pg migrate --schema {schema}` (or `await eventuali_pg.migrate(dsn, "
        f"schema={schema!r})`, or `alembic upgrade head` in the eventuali-pg checkout)"
    )
    async with pool.acquire() as conn:
        await check_schema_revision(conn, schema, command=command)
