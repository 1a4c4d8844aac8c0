"""ProjectionRunner: feeds a projection from a durable subscription.

One runner owns one :class:`EventStreamer` attached to the store, and one subscription on it
that starts after the stored checkpoint (the receiver catches up from the table, then follows
the live feed). Events go through a small queue to the processing loop, in batches:

* exactly-once (:class:`TransactionalProjection`): one transaction per batch holds the
  handler's writes and the checkpoint move, fenced on the checkpoint the runner last saw;
* at-least-once (:class:`Projection`): the handler runs, and the checkpoint follows every
  ``checkpoint_every`` events, every ``checkpoint_interval`` seconds, and at a clean stop.

A failing batch is handled again one event at a time; a failing event is retried with backoff
up to ``max_attempts`` times, then parked in the dead-letter table, and processing goes on.
Whatever the handler raises (``OSError``, ``TimeoutError``, ``CancelledError``, a database
error of its own) is a handler failure; only a failure of the runner's own database work (its
connection, transaction, checkpoint or dead-letter writes, or the exactly-once connection found
dead after the handler) is a database failure. That, a lost lease or a moved checkpoint ends
the session: the runner resumes from the stored checkpoint (after acquiring the lease again in
``single_active`` mode).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from .. import telemetry
from .._tasks import cancel_and_wait
from ..errors import ConfigurationError, InvalidInputError
from ..roles.check import require_writer
from ..stream.streamer import EventStreamer
from ..stream.subscription import NameFilter, Subscription
from .checkpoints import CheckpointStore, check_subscription_id
from .dead_letters import DeadLetter, DeadLetterQueue
from .elastic import ElasticGroup
from .elastic_sessions import ElasticSessions
from .groups import ConsumerGroup
from .leases import AdvisoryLease
from .membership import GroupMembership
from .projection import AnyProjection, Projection, TransactionalProjection
from .rebuild import rewind
from .stream_sessions import StreamSessions
from .versions import check_version, restart_replay, versioned_id
from .waiting import wait_for_checkpoint

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")

Mode = Literal["exactly_once", "at_least_once"]

#: The tables a runner writes (it checks it may before it starts).
RUNNER_TABLES = ("checkpoints", "dead_letters", "projection_versions")
#: And the ones a member of an elastic group writes besides.
ELASTIC_TABLES = ("group_members", "group_partitions")


@dataclass(frozen=True)
class ProjectionStats:
    """A snapshot of a runner's figures."""

    subscription_id: str
    checkpoint_id: str
    version: int
    replaying: bool
    mode: Mode
    running: bool
    active: bool
    processed_position: int
    checkpoint: int
    handled: int
    batches: int
    retries: int
    parked: int
    sessions: int
    last_error: str | None


class ProjectionRunner(ElasticSessions, StreamSessions):
    """Runs ``projection`` over the events of ``store``, durably. See the module docstring.

    Options: ``subscription_id`` (required; names the checkpoint and the dead letters),
    ``aggregate_type_filter`` / ``event_type_filter`` (as for :class:`Subscription`),
    ``batch_size`` (events per handler call, default 100), ``checkpoint_every`` and
    ``checkpoint_interval`` (at-least-once checkpoint frequency: events and seconds, defaults
    1000 and 1.0), ``max_attempts`` (handler calls per event before parking, default 5),
    ``retry_delay`` / ``max_retry_delay`` (backoff between attempts, seconds, defaults 0.1 and
    10), ``group`` (a :class:`ConsumerGroup` membership), ``single_active`` (only the process
    holding the lease runs; others wait and take over), ``lease_poll_interval`` /
    ``lease_heartbeat_interval`` (seconds, defaults 1.0 and 2.0), ``capacity`` (receiver
    buffer, default 1000), ``stop_timeout`` (seconds a stop waits for the batch in progress,
    default 10).
    """

    def __init__(
        self,
        store: EventStore,
        projection: AnyProjection,
        *,
        subscription_id: str,
        aggregate_type_filter: NameFilter = None,
        event_type_filter: NameFilter = None,
        batch_size: int = 100,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 1.0,
        max_attempts: int = 5,
        retry_delay: float = 0.1,
        max_retry_delay: float = 10.0,
        group: ConsumerGroup | ElasticGroup | None = None,
        single_active: bool = False,
        lease_poll_interval: float = 1.0,
        lease_heartbeat_interval: float = 2.0,
        capacity: int = 1000,
        stop_timeout: float = 10.0,
    ) -> None:
        if not isinstance(projection, (Projection, TransactionalProjection)):
            raise InvalidInputError(
                "projection must be a Projection (at-least-once) or a TransactionalProjection "
                f"(exactly-once), got {type(projection).__name__}"
            )
        check_subscription_id(subscription_id)
        version = check_version(getattr(projection, "version", 1))
        self._base_subscription_id = subscription_id
        self._version = version
        # A later version keeps checkpoints and dead letters of its own (see versions.py).
        subscription_id = versioned_id(subscription_id, version)
        for name, value in (
            ("batch_size", batch_size),
            ("checkpoint_every", checkpoint_every),
            ("max_attempts", max_attempts),
            ("capacity", capacity),
        ):
            _check_int(name, value)
        for name, seconds in (
            ("checkpoint_interval", checkpoint_interval),
            ("retry_delay", retry_delay),
            ("max_retry_delay", max_retry_delay),
            ("lease_poll_interval", lease_poll_interval),
            ("lease_heartbeat_interval", lease_heartbeat_interval),
            ("stop_timeout", stop_timeout),
        ):
            _check_seconds(name, seconds)
        if group is not None and not isinstance(group, (ConsumerGroup, ElasticGroup)):
            raise InvalidInputError(
                f"group must be a ConsumerGroup, an ElasticGroup or None, got {group!r}"
            )
        if not isinstance(single_active, bool):
            raise ConfigurationError(f"single_active must be True or False, got {single_active!r}")
        if single_active and isinstance(group, ElasticGroup):
            raise ConfigurationError(
                "single_active=True does not combine with an ElasticGroup: its partitions "
                "already have one owner at a time (start more members instead of standbys)"
            )
        # Validates the filters now rather than at the first subscribe.
        probe = Subscription(
            id=subscription_id,
            aggregate_type_filter=aggregate_type_filter,
            event_type_filter=event_type_filter,
        )
        self._filtered = probe.aggregate_types is not None or probe.event_types is not None
        self._share_filters = (probe.aggregate_types, probe.event_types)
        self._store = store
        self._projection = projection
        self._subscription_id = subscription_id
        self._aggregate_type_filter = aggregate_type_filter
        self._event_type_filter = event_type_filter
        self._batch_size = batch_size
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = float(checkpoint_interval)
        self._max_attempts = max_attempts
        self._retry_delay = float(retry_delay)
        self._max_retry_delay = float(max_retry_delay)
        self._group = group
        self._capacity = capacity
        self._stop_timeout = float(stop_timeout)
        self._exactly_once = isinstance(projection, TransactionalProjection)
        self._checkpoint_id = (
            group.checkpoint_id(subscription_id) if group is not None else subscription_id
        )
        self._checkpoints = CheckpointStore(store)
        self._dead_letters = DeadLetterQueue(store)
        self._lease_poll_interval = float(lease_poll_interval)
        self._standby_checkpoint = None
        self._lease = (
            AdvisoryLease(
                store.connector,
                f"eventuali_pg:{store.schema}:{self._checkpoint_id}",
                poll_interval=float(lease_poll_interval),
                heartbeat_interval=float(lease_heartbeat_interval),
            )
            if single_active
            else None
        )
        # The checkpoint rows: the subscription's own, or one per partition a member handles
        # (an elastic member: every partition of the group; it handles those it owns now).
        self._membership = (
            GroupMembership(store, subscription_id, group)
            if isinstance(group, ElasticGroup)
            else None
        )
        self._owned: frozenset[int] = frozenset()
        self._rebalance_due = False
        if isinstance(group, ElasticGroup):
            self._checkpoint_ids = group.group_checkpoint_ids(subscription_id)
        elif group is not None:
            self._checkpoint_ids = group.partition_checkpoint_ids(subscription_id)
        else:
            self._checkpoint_ids = [subscription_id]
        self._positions: dict[str, int] = dict.fromkeys(self._checkpoint_ids, 0)
        self._replay_until = 0  # known once a session has recorded the version
        projection._bind(self._checkpoints, self._checkpoint_ids)
        self._streamer: EventStreamer | None = None
        # Exactly-once: the session's own connection for the batch transactions.
        self._connection: Any = None
        # True while the reader waits on the receiver, holding no event.
        self._reader_waiting = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._progress = asyncio.Condition()
        self._active = False
        self._processed = 0
        self._committed = 0  # the lowest position of this runner's checkpoints
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()
        self._handled = 0
        self._batches = 0
        self._retries = 0
        self._parked = 0
        self._sessions = 0
        self._last_error = None
        telemetry.track_projection(self)

    # -- properties ---------------------------------------------------------------------------

    @property
    def subscription_id(self) -> str:
        """The subscription id (names the dead letters; the checkpoint unless in a group)."""
        return self._subscription_id

    @property
    def version(self) -> int:
        """The projection's version (its ``version`` attribute; 1 by default)."""
        return self._version

    @property
    def checkpoint_id(self) -> str:
        """The id of this runner's checkpoint row."""
        return self._checkpoint_id

    @property
    def telemetry_name(self) -> str:
        """The consumer name of its metrics and spans: the subscription id."""
        return self._subscription_id

    @property
    def telemetry_destination(self) -> str:
        """The schema of its store."""
        return self._store.schema

    @property
    def lag(self) -> int | None:
        """Events between the head its streamer knows and the position processed (None
        unless running and active)."""
        streamer = self._streamer
        if streamer is None or not self._active:
            return None
        return max(0, streamer._head - self._processed)

    @property
    def mode(self) -> Mode:
        """``"exactly_once"`` for a TransactionalProjection, else ``"at_least_once"``."""
        return "exactly_once" if self._exactly_once else "at_least_once"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None

    @property
    def active(self) -> bool:
        """True while this runner is processing (in single-active mode: holds the lease)."""
        return self._active

    @property
    def checkpoints(self) -> CheckpointStore:
        """The store's checkpoints."""
        return self._checkpoints

    @property
    def dead_letter_queue(self) -> DeadLetterQueue:
        """The store's dead-letter table."""
        return self._dead_letters

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start processing in the background (from the stored checkpoint, 0 if none)."""
        if self._task is not None:
            raise ConfigurationError(f"projection runner {self._subscription_id!r} is running")
        # A role that may not write checkpoints fails here, naming the privilege, rather than
        # in a background session that would retry forever.
        async with self._store.connection() as conn:
            await require_writer(
                conn,
                self._store.schema,
                RUNNER_TABLES + (ELASTIC_TABLES if self._membership is not None else ()),
                dsn=self._store.dsn,
                action=f"running projection {self._checkpoint_id!r}",
            )
        if self._lease is not None:
            await self._lease.check_session()
        if self._membership is not None:
            await self._membership.join()  # a misconfigured group fails here, not in the task
            self._stopping = False
            self._processed = self._committed = 0
            self._task = asyncio.create_task(
                self._supervise_elastic(), name=f"eventuali_pg projection {self._checkpoint_id}"
            )
            return
        streamer = EventStreamer(capacity=self._capacity)
        await self._store.attach_streamer(streamer)
        self._streamer = streamer
        self._stopping = False
        # Known again once the session has read the stored checkpoint.
        self._processed = self._committed = 0
        self._task = asyncio.create_task(
            self._supervise(streamer), name=f"eventuali_pg projection {self._checkpoint_id}"
        )

    async def stop(self) -> None:
        """Stop cleanly: let the batch in progress finish (at most ``stop_timeout`` seconds),
        write the checkpoint of everything handled, release the lease. Idempotent."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        try:
            try:
                async with asyncio.timeout(self._stop_timeout):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "projection %r: batch still running after %.1fs; cancelling it",
                    self._checkpoint_id,
                    self._stop_timeout,
                )
            await cancel_and_wait(task)
            if not self._store.closed and self._processed > self._committed:
                try:
                    await self._flush()
                except Exception as exc:
                    logger.warning(
                        "projection %r: final checkpoint not written (%s)", self._checkpoint_id, exc
                    )
            if self._membership is not None and not self._store.closed:
                # After the checkpoints: the next owners resume where this member stopped.
                self._owned = frozenset()
                try:
                    await self._membership.leave()
                except Exception as exc:
                    logger.warning(
                        "projection %r: could not leave the group (%s); its partitions move "
                        "when their leases run out",
                        self._checkpoint_id,
                        exc,
                    )
        finally:
            self._task = None
            self._idle.set()
            streamer, self._streamer = self._streamer, None
            if streamer is not None:
                await self._store.detach_streamer(streamer)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_for_position(self, position: int, timeout: float | None = None) -> None:
        """Wait until every event up to global ``position`` has been handled (or parked or
        skipped) *by this runner*. Raises ``TimeoutError`` after ``timeout`` seconds.

        In a runner on standby (``single_active``, another process holds the lease) this waits
        for nothing it will do: use :meth:`wait_for_checkpoint`, which works in every process.
        """
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: self._processed >= position)

    async def wait_for_checkpoint(
        self, position: int, timeout: float | None = None, *, poll_interval: float = 0.1
    ) -> int:
        """Wait until this runner's *stored* checkpoint is at ``position`` or beyond, whichever
        process moved it (read-your-writes across workers); returns the stored position. See
        :func:`eventuali_pg.projections.wait_for_checkpoint`."""
        return await wait_for_checkpoint(
            self._checkpoints,
            self._checkpoint_ids,
            position,
            timeout=timeout,
            poll_interval=poll_interval,
        )

    # -- rebuild and dead letters -------------------------------------------------------------

    async def reset(self) -> None:
        """Rebuild from position 0: stop if running, call the projection's ``reset`` (for a
        TransactionalProjection in the transaction that also rewinds the checkpoint and drops
        this subscription's parked events), then start again if it was running.

        A consumer-group member refuses with :class:`ConfigurationError`: the members share
        one read model, so the group is rebuilt as a whole with :func:`reset_group`.
        """
        group = self._group
        if isinstance(group, ElasticGroup):
            raise ConfigurationError(
                f"projection runner {self._checkpoint_id!r} is a member of an elastic consumer "
                "group: resetting one member would empty the read model the others share. Stop "
                "every member (in every process), call eventuali_pg.projections.reset_group("
                f"store, projection, subscription_id={self._base_subscription_id!r}, "
                f"partitions={group.partitions}, elastic=True), then start the members again"
            )
        if group is not None:
            raise ConfigurationError(
                f"projection runner {self._checkpoint_id!r} is member {group.member} of a "
                f"consumer group of {group.size}: resetting one member would empty the read "
                "model the others share while only its own checkpoint rewinds. Stop every "
                "member (in every process), call eventuali_pg.projections.reset_group(store, "
                f"projection, subscription_id={self._subscription_id!r}, size={group.size}), "
                "then start the members again"
            )
        was_running = self.running
        await self.stop()
        await rewind(self._store, self._projection, self._subscription_id, self._checkpoint_ids)
        await restart_replay(self._store, self._base_subscription_id, self._version)
        self._processed = self._committed = 0
        self._positions = dict.fromkeys(self._checkpoint_ids, 0)
        self._since_checkpoint = 0
        if was_running:
            await self.start()

    async def dead_letters(self) -> list[DeadLetter]:
        """This subscription's parked events (of every group member), oldest first."""
        return await self._dead_letters.list(self._subscription_id, limit=None)

    async def retry_dead_letter(self, position: int) -> bool:
        """Hand the parked event at ``position`` to the projection again; True when it was
        handled (and left the table), False when it failed again (see
        :meth:`DeadLetterQueue.retry`)."""
        return await self._dead_letters.retry(self._subscription_id, position, self._projection)

    async def discard_dead_letter(self, position: int) -> bool:
        """Delete the parked event at ``position`` without handling it."""
        return await self._dead_letters.discard(self._subscription_id, position)

    def stats(self) -> ProjectionStats:
        """Positions, counts and the last session error. On standby (``single_active``,
        another process holds the lease) ``checkpoint`` is the stored one, refreshed every
        ``lease_poll_interval`` seconds."""
        checkpoint = self._committed
        if not self._active and self._standby_checkpoint is not None:
            checkpoint = self._standby_checkpoint
        return ProjectionStats(
            subscription_id=self._subscription_id,
            checkpoint_id=self._checkpoint_id,
            version=self._version,
            replaying=self._processed < self._replay_until,
            mode=self.mode,
            running=self.running,
            active=self._active,
            processed_position=self._processed,
            checkpoint=checkpoint,
            handled=self._handled,
            batches=self._batches,
            retries=self._retries,
            parked=self._parked,
            sessions=self._sessions,
            last_error=self._last_error,
        )




def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")
