"""Elastic consumer groups: members join and leave while running, and the partitions move.

An aggregate belongs to one of a fixed number of *partitions* (``partitions``, default 16):
``share_hash(aggregate_id) % partitions``, where :func:`share_hash` is the first 32 bits of the
MD5 of the id (the same in SQL, so a member reads only its partitions' events from the
database). A partition is the unit of ownership and of checkpoints: it has one owner at a time
(a lease row in ``group_partitions``), and one checkpoint, ``"<id>#share-<p>-of-<partitions>"``,
that moves to the next owner with it. Per-aggregate order holds because an aggregate's events
all live in one partition, handled by one member at a time from that partition's checkpoint.

The membership protocol is in :mod:`~eventuali_pg.projections.membership`; the runner's
sessions in :mod:`~eventuali_pg.projections.elastic_sessions`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from dataclasses import dataclass, field

from ..errors import InvalidInputError
from .checkpoints import check_subscription_id
from .groups import DEFAULT_PARTITIONS, MAX_PARTITIONS

#: Seconds a member's lease lasts without a heartbeat (a killed member's partitions are free
#: again after this long).
DEFAULT_LEASE_SECONDS = 10.0

#: Seconds between heartbeats (renewing the leases and looking whether to rebalance).
DEFAULT_HEARTBEAT_SECONDS = 1.0


def share_hash(aggregate_id: str) -> int:
    """The 32-bit partition hash of ``aggregate_id`` (first 4 bytes of its UTF-8 MD5)."""
    digest = hashlib.md5(aggregate_id.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big")


def share_partition(aggregate_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition (0 .. ``partitions`` - 1) of ``aggregate_id`` in an elastic group."""
    return share_hash(aggregate_id) % partitions


def _default_member_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInputError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ElasticGroup:
    """Membership of one runner in a consumer group whose size changes while it runs:
    ``ElasticGroup()`` in every process with the same ``subscription_id``.

    ``partitions`` (default 16, at most 4,096) is the most members that get work; keep it the
    same for every member and for the life of the subscription. ``member_id`` names this member
    (default: host, process id and a random suffix; unique per runner). ``lease_seconds`` is how
    long a member that stops heartbeating (killed, hung, cut off) keeps its partitions;
    ``heartbeat_seconds`` how often a member renews its leases and rebalances.
    """

    partitions: int = DEFAULT_PARTITIONS
    member_id: str = field(default_factory=_default_member_id)
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS

    def __post_init__(self) -> None:
        partitions = self.partitions
        if (
            isinstance(partitions, bool)
            or not isinstance(partitions, int)
            or not 1 <= partitions <= MAX_PARTITIONS
        ):
            raise InvalidInputError(
                f"partitions must be an integer from 1 to {MAX_PARTITIONS}, got {partitions!r}"
            )
        check_subscription_id(self.member_id, what="member_id")
        lease = _seconds(self.lease_seconds, "lease_seconds")
        heartbeat = _seconds(self.heartbeat_seconds, "heartbeat_seconds")
        if lease < 2 * heartbeat:
            raise InvalidInputError(
                f"lease_seconds ({lease:g}) must be at least twice heartbeat_seconds "
                f"({heartbeat:g}), or a live member loses its partitions between two heartbeats"
            )

    def partition(self, aggregate_id: str) -> int:
        """The partition of ``aggregate_id``."""
        return share_partition(aggregate_id, self.partitions)

    def partition_checkpoint_id(self, subscription_id: str, partition: int) -> str:
        """The checkpoint id of ``partition`` within subscription ``subscription_id``."""
        return f"{subscription_id}#share-{partition}-of-{self.partitions}"

    def group_checkpoint_ids(self, subscription_id: str) -> list[str]:
        """The checkpoint ids of every partition of the group."""
        return [self.partition_checkpoint_id(subscription_id, p) for p in range(self.partitions)]

    def checkpoint_id(self, subscription_id: str) -> str:
        """This member's name within subscription ``subscription_id`` (in figures and logs)."""
        return f"{subscription_id}#member-{self.member_id}"


def quota(members: list[str], member_id: str, partitions: int) -> int:
    """How many partitions ``member_id`` should own among the live ``members`` (sorted): the
    partitions dealt out evenly, the first ``partitions % len(members)`` members one more."""
    if member_id not in members:
        return 0
    count = len(members)
    rank = members.index(member_id)
    return partitions // count + (1 if rank < partitions % count else 0)
