"""Rebuilding a projection from position 0: one subscription, or a whole consumer group.

The projection's ``reset``, the checkpoint rewind and the removal of the parked events commit
together (for an at-least-once projection, whose ``reset`` has no transaction, its ``reset``
runs first). The transaction runs on a connection of its own, so ``reset`` may use the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InvalidInputError
from ._db import own_connection
from .checkpoints import CheckpointStore, check_subscription_id
from .dead_letters import DeadLetterQueue
from .elastic import ElasticGroup
from .groups import DEFAULT_PARTITIONS, ConsumerGroup
from .projection import AnyProjection, Projection, TransactionalProjection
from .sql import projection_sql

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
    store: EventStore,
    projection: AnyProjection,
    *,
    subscription_id: str,
    size: int | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    elastic: bool = False,
) -> None:
    """Rebuild consumer group ``subscription_id`` from position 0: a fixed group of ``size``
    members, or with ``elastic=True`` an :class:`ElasticGroup` (of ``partitions``, the
    number its members use), which is refused while any member is alive.

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
    if elastic:
        elastic_group = ElasticGroup(partitions=partitions)
        sql = projection_sql(store.schema)
        async with store.connection() as conn:
            live = [row["member_id"] for row in await conn.fetch(
                sql.group_members_live, subscription_id
            )]
        if live:
            raise ConfigurationError(
                f"consumer group {subscription_id!r} still has live members ({', '.join(live)}): "
                "stop every member (in every process) before rebuilding it"
            )
        ids = elastic_group.group_checkpoint_ids(subscription_id)
        await rewind(store, projection, subscription_id, ids)
        return
    if size is None:
        raise InvalidInputError("reset_group needs size= for a fixed group, or elastic=True")
    group = ConsumerGroup(size=size, member=0, partitions=partitions)
    await rewind(store, projection, subscription_id, group.group_checkpoint_ids(subscription_id))
