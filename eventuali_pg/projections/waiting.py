"""Waiting for a stored checkpoint: read-your-writes from any process.

A projection in ``single_active`` mode runs in one process at a time; the others (web workers
on standby, or processes that never run it) cannot see its progress in memory. What they can
see is its checkpoint row. :func:`wait_for_checkpoint` polls that row, starting fast and backing
off to ``poll_interval``, until it reaches a position (typically the one ``store.save``
returned).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..store.validation import check_position
from .checkpoints import CheckpointStore, check_subscription_id

if TYPE_CHECKING:
    from ..store.event_store import EventStore

__all__ = ["wait_for_checkpoint"]

FIRST_POLL_DELAY = 0.005


async def wait_for_checkpoint(
    store: EventStore | CheckpointStore,
    checkpoint_id: str | Sequence[str],
    position: int,
    *,
    timeout: float | None = None,
    poll_interval: float = 0.1,
) -> int:
    """Wait until the stored checkpoint ``checkpoint_id`` is at ``position`` or beyond; return
    the stored position. Several ids (a consumer group's partitions) wait for the lowest.

    Works in any process with a store on the same database, whether or not a runner of that
    projection runs there. For an exactly-once (:class:`TransactionalProjection`) runner the
    checkpoint moves in the transaction of the read model's writes, so once this returns the
    read model shows every event up to ``position`` that the projection selects. An
    at-least-once runner writes its checkpoint only every ``checkpoint_every`` events or
    ``checkpoint_interval`` seconds, so waiting on it takes up to that long.

    Raises ``TimeoutError`` (saying where the checkpoint is) after ``timeout`` seconds.
    """
    names = [checkpoint_id] if isinstance(checkpoint_id, str) else list(checkpoint_id)
    if not names:
        raise ConfigurationError("wait_for_checkpoint needs at least one checkpoint id")
    for name in names:
        check_subscription_id(name, what="checkpoint id")
    check_position(position)
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or not (
        poll_interval > 0
    ):
        raise ConfigurationError(
            f"poll_interval must be a number of seconds > 0, got {poll_interval!r}"
        )
    checkpoints = store if isinstance(store, CheckpointStore) else CheckpointStore(store)
    started = time.monotonic()
    delay = min(FIRST_POLL_DELAY, float(poll_interval))
    stored = 0
    while True:
        stored = min((await checkpoints.get_many(names)).values())
        if stored >= position:
            return stored
        if timeout is not None:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise TimeoutError(
                    f"checkpoint {', '.join(names)!r} is at position {stored}, not yet at "
                    f"{position}, "
                    f"after {timeout:g} s. Is a runner of that projection active in some process "
                    "(eventuali-pg status shows checkpoints and lag), and is the position one of "
                    "an event the projection selects?"
                )
            await asyncio.sleep(min(delay, left))
        else:
            await asyncio.sleep(delay)
        delay = min(delay * 2, float(poll_interval))
