"""Rebuilding a projection from position 0: one subscription, or a whole consumer group.

The projection's ``reset``, the checkpoint rewind and the removal of the parked events commit
together (for an at-least-once projection, whose ``reset`` has no transaction, its ``reset``
runs first). The transaction runs on a connection of its own, so ``reset`` may use the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidInputError
from ._db import own_connection
from .checkpoints import CheckpointStore, check_subscription_id
from .dead_letters import DeadLetterQueue
from .groups import ConsumerGroup
from .projection import AnyProjection, Projection, TransactionalProjection

if TYPE_CHECKING:
    from ..store.event_store import EventStore

logger = logging.getLogger("eventuali_pg.projections")


async def rewind(
    store: EventStore,
    projection: AnyProjection,
    subscription_id: str,
    checkpoint_ids: Sequence[str],
) -> None:
    """Reset ``projection``, set every checkpoint of ``checkpoint_ids`` to 0 and drop the
    parked events of ``subscription_id``, in one transaction."""
    if isinstance(projection, Projection):
        await projection.reset()
    checkpoints = CheckpointStore(store)
    async with own_connection(store) as conn, conn.transaction():
        if isinstance(projection, TransactionalProjection):
            await projection.reset(conn)
        for checkpoint_id in checkpoint_ids:
            await checkpoints.reset(checkpoint_id, 0, connection=conn)
        await DeadLetterQueue(store).discard_all(subscription_id, connection=conn)
    logger.info("subscription %r reset to position 0 (%s)", subscription_id, checkpoint_ids)


async def reset_group(
    store: EventStore, projection: AnyProjection, *, subscription_id: str, size: int
) -> None:
    """Rebuild consumer group ``subscription_id`` of ``size`` members from position 0.

    Stop every member first (in every process). In one transaction this calls the
    projection's ``reset`` (a :class:`TransactionalProjection`'s gets the connection; an
    at-least-once projection's ``reset`` runs just before), rewinds every member's checkpoint
    to 0 and drops the group's parked events. Then start the members again: each rebuilds its
    share. ``projection`` is one instance of the group's projection class, used only for its
    ``reset``.
    """
    check_subscription_id(subscription_id)
    if not isinstance(projection, (Projection, TransactionalProjection)):
        raise InvalidInputError(
            "projection must be a Projection or a TransactionalProjection (its reset empties the "
            f"group's read model), got {type(projection).__name__}"
        )
    group = ConsumerGroup(size=size, member=0)
    await rewind(store, projection, subscription_id, group.group_checkpoint_ids(subscription_id))
