"""Durable subscriptions and projections: checkpoints, exactly-once read models, dead letters,
consumer groups and single active consumers."""

from .checkpoints import Checkpoint, CheckpointStore
from .dead_letters import DeadLetter, DeadLetterQueue
from .elastic import ElasticGroup, share_partition
from .groups import ConsumerGroup, member_for
from .leases import AdvisoryLease
from .projection import Projection, TransactionalProjection
from .rebuild import reset_group
from .runner import ProjectionRunner, ProjectionStats
from .versions import ProjectionVersion, activate, active_version, retire, versions
from .waiting import wait_for_checkpoint

__all__ = [
    "AdvisoryLease",
    "Checkpoint",
    "CheckpointStore",
    "ConsumerGroup",
    "DeadLetter",
    "DeadLetterQueue",
    "ElasticGroup",
    "Projection",
    "ProjectionRunner",
    "ProjectionStats",
    "ProjectionVersion",
    "TransactionalProjection",
    "activate",
    "active_version",
    "member_for",
    "reset_group",
    "retire",
    "share_partition",
    "versions",
    "wait_for_checkpoint",
]
