"""The sessions of a runner in an elastic consumer group (see :mod:`.elastic`).

A session processes the partitions the member owns when it starts: each partition resumes from
its own checkpoint, the member reads its share from the lowest of them (events of a partition
already past its checkpoint are skipped), and every batch transaction (exactly-once) is fenced
on the member still owning those partitions. Meanwhile its heartbeat renews the leases. When a
rebalance is due (a member joined or left) the session ends at a batch boundary, the
checkpoints of everything handled are written, and only then does the member release
partitions above its share and claim free ones, and start the next session. A member that
loses a partition (its heartbeat was too late) ends the session at once; its exactly-once
batches are refused by the fence, so the new owner's work is never doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .._tasks import run_together
from ..stream.backoff import Backoff
from ._db import close_connection, database_step, open_connection
from .elastic import ElasticGroup
from .leases import LeaseLost
from .membership import GroupMembership
from .processing import EventHandling
from .share import Doorbell, ShareReader, doorbell_of
from .versions import register

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")

T = TypeVar("T")


async def finish_first(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` as a task that runs to its end even if the caller is cancelled (then the
    cancellation follows). A membership statement is a short transaction on a pooled
    connection: cut in the middle, the pool would get the connection back mid-transaction."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            logger.debug("membership statement failed while cancelled: %s", task.exception())
        raise


class ElasticSessions(EventHandling):
    """The elastic half of :class:`~eventuali_pg.ProjectionRunner` (its state is the runner's)."""

    _store: EventStore
    _base_subscription_id: str
    _version: int
    _stopping: bool
    _idle: asyncio.Event
    _active: bool
    _sessions: int
    _last_error: str | None
    _batch_size: int
    _membership: GroupMembership | None
    _owned: frozenset[int]
    _rebalance_due: bool
    _share_filters: tuple[frozenset[str] | None, frozenset[str] | None]

    if TYPE_CHECKING:  # the runner's

        def _checkpoint_due(self) -> bool: ...

        def _idle_timeout(self) -> float | None: ...

    def _elastic_group(self) -> ElasticGroup:
        group = self._group
        assert isinstance(group, ElasticGroup)
        return group

    @property
    def owned_partitions(self) -> list[int]:
        """The partitions this member processes now (an elastic group member; else [])."""
        return sorted(self._owned)

    async def _fence(self, connection: Any) -> None:
        membership = self._membership
        if membership is not None:
            await membership.fence(connection, self._owned)

    async def _supervise_elastic(self) -> None:
        membership = self._membership
        assert membership is not None
        group = self._elastic_group()
        backoff = Backoff(initial=0.1, maximum=5.0)
        doorbell = await doorbell_of(self._store)
        bell = doorbell.waiter()
        try:
            while not self._stopping and not self._store.closed:
                try:
                    self._owned = await finish_first(membership.rebalance(self._owned))
                    if not self._owned:
                        # Every partition has a live owner: wait for one to come free.
                        await asyncio.sleep(group.heartbeat_seconds)
                        continue
                    self._active = True
                    self._sessions += 1
                    await self._share_session(membership, doorbell, bell)
                    backoff.reset()
                except Exception as exc:
                    if not self._session_ended(exc, "rebalancing from the checkpoints"):
                        return
                    await asyncio.sleep(backoff.next_delay())
                finally:
                    self._active = False
        finally:
            doorbell.forget(bell)

    async def _share_session(
        self, membership: GroupMembership, doorbell: Doorbell, bell: asyncio.Event
    ) -> None:
        group = self._elastic_group()
        owned = self._owned
        ids = [group.partition_checkpoint_id(self._subscription_id, p) for p in sorted(owned)]
        async with database_step():
            self._positions = await self._checkpoints.get_many(ids)
            stored = min(self._positions.values())
            self._replay_until = await register(
                self._store, self._base_subscription_id, self._version, stored
            )
            if self._exactly_once:
                self._connection = await open_connection(self._store)
        self._rebalance_due = False
        self._committed = self._processed = stored
        self._since_checkpoint = 0
        self._checkpointed_at = time.monotonic()
        logger.info(
            "projection %r resumes partitions %s after position %d",
            self._checkpoint_id,
            sorted(owned),
            stored,
        )
        try:
            await run_together(
                f"projection {self._checkpoint_id}",
                [
                    ("share", self._process_share(self._share_reader(), bell)),
                    ("heartbeat", self._heartbeat(membership, owned, bell)),
                ],
            )
            # A clean end (rebalance or stop): what was handled reaches the checkpoints
            # before any partition is released.
            if not self._store.closed and self._processed > self._committed:
                async with database_step():
                    await self._flush()
        finally:
            connection, self._connection = self._connection, None
            await close_connection(connection)

    async def _heartbeat(
        self, membership: GroupMembership, owned: frozenset[int], bell: asyncio.Event
    ) -> None:
        group = self._elastic_group()
        while True:
            await asyncio.sleep(group.heartbeat_seconds)
            try:
                due = await finish_first(membership.heartbeat(owned))
            except LeaseLost:
                raise
            except Exception as exc:  # the leases last lease_seconds: try again next beat
                logger.warning("projection %r: heartbeat failed (%s)", self._checkpoint_id, exc)
                continue
            if due and not self._rebalance_due:
                logger.info("projection %r: rebalance due", self._checkpoint_id)
                self._rebalance_due = True
                bell.set()

    def _share_reader(self) -> ShareReader:
        group = self._elastic_group()
        aggregate_types, event_types = self._share_filters
        return ShareReader(
            self._store,
            group.partitions,
            aggregate_types=aggregate_types,
            event_types=event_types,
        )

    async def _process_share(self, reader: ShareReader, bell: asyncio.Event) -> None:
        owned = sorted(self._owned)
        cursor = self._processed
        while True:
            if self._stopping or self._rebalance_due:
                return
            self._idle.clear()
            try:
                bell.clear()
                async with database_step():
                    items, covered, more = await reader.page(cursor, owned, self._batch_size)
                if items:
                    await self._handle(items)
                await self._advanced(covered)
                cursor = max(cursor, covered)
                if more:
                    continue
                if self._checkpoint_due():
                    await self._flush()
            finally:
                self._idle.set()
            if self._stopping or self._rebalance_due:
                return
            # Woken by a commit or a notification; else a poll, or the checkpoint interval.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._share_wait()):
                    await bell.wait()

    def _share_wait(self) -> float:
        poll = self._store.options.poll_seconds
        timeout = self._idle_timeout()
        return poll if timeout is None else min(poll, timeout)
