"""Durable subscriptions and projections: checkpoints, exactly-once read models, dead letters,
consumer groups and single active consumers."""

from .checkpoints import Checkpoint, CheckpointStore
from .dead_letters import DeadLetter, DeadLetterQueue
from .groups import ConsumerGroup, member_for
from .leases import AdvisoryLease
from .projection import Projection, TransactionalProjection
from .rebuild import reset_group
from .runner import ProjectionRunner, ProjectionStats
from .waiting import wait_for_checkpoint

__all__ = [
    "AdvisoryLease",
    "Checkpoint",
    "CheckpointStore",
    "ConsumerGroup",
    "DeadLetter",
    "DeadLetterQueue",
    "Projection",
    "ProjectionRunner",
    "ProjectionStats",
    "TransactionalProjection",
    "member_for",
    "reset_group",
    "wait_for_checkpoint",
]
