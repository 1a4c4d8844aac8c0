"""Consumer groups: one subscription split across N members by aggregate id.

An aggregate belongs to one of a fixed number of *partitions* (``partitions``, default 16):
``zlib.crc32(aggregate_id.encode("utf-8")) % partitions`` (CRC-32, the IEEE polynomial used by
zlib, gzip and PNG; the same in every process, language and Python version, unlike ``hash()``).
Partition ``p`` belongs to member ``p % size``. Every event of an aggregate therefore goes to
one member, which handles them in global order.

Checkpoints are kept per partition (``"<subscription id>#partition-<p>-of-<partitions>"``), not
per member: when the group is resized, each partition keeps its checkpoint and moves to its new
member, so nothing is orphaned and nothing is handled twice by a fenced (exactly-once) member.
The number of partitions is fixed for the life of a subscription: it bounds the group's size.
A group is rebuilt as a whole, with :func:`~eventuali_pg.projections.reset_group`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import InvalidInputError

#: Partitions of a consumer group unless it says otherwise (the largest size it can grow to).
DEFAULT_PARTITIONS = 16
#: The most partitions a group may have: each keeps a checkpoint row that its member reads and
#: moves, and a member lists its partitions when it starts.
MAX_PARTITIONS = 4096


def partition_of(aggregate_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition (0 .. ``partitions`` - 1) of ``aggregate_id``."""
    return zlib.crc32(aggregate_id.encode("utf-8")) % partitions


def member_for(
    aggregate_id: str, group_size: int, partitions: int = DEFAULT_PARTITIONS
) -> int:
    """The member (0 .. ``group_size`` - 1) that handles the events of ``aggregate_id``."""
    return partition_of(aggregate_id, partitions) % group_size


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{what} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class ConsumerGroup:
    """Membership of one runner in a consumer group: ``ConsumerGroup(size=3, member=0)``
    (``partitions``: see the module docstring; keep it the same for every member)."""

    size: int
    member: int
    partitions: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        _positive(self.size, "group size")
        _positive(self.partitions, "partitions")
        if self.partitions > MAX_PARTITIONS:
            raise InvalidInputError(
                f"partitions must be at most {MAX_PARTITIONS} (one checkpoint row each), got "
                f"{self.partitions!r}"
            )
        if self.size > self.partitions:
            raise InvalidInputError(
                f"a group of {self.size} members needs at least as many partitions, got "
                f"partitions={self.partitions}; give the group more partitions (fixed for the "
                "life of its subscription)"
            )
        if (
            isinstance(self.member, bool)
            or not isinstance(self.member, int)
            or not 0 <= self.member < self.size
        ):
            raise InvalidInputError(
                f"group member must be an integer from 0 to {self.size - 1} (size {self.size}), "
                f"got {self.member!r}"
            )

    @property
    def owned_partitions(self) -> list[int]:
        """The partitions this member handles."""
        return [p for p in range(self.partitions) if p % self.size == self.member]

    def partition(self, aggregate_id: str) -> int:
        """The partition of ``aggregate_id``."""
        return partition_of(aggregate_id, self.partitions)

    def owns(self, aggregate_id: str) -> bool:
        """True when this member handles the events of ``aggregate_id``."""
        return self.partition(aggregate_id) % self.size == self.member

    def checkpoint_id(self, subscription_id: str) -> str:
        """This member's name within subscription ``subscription_id`` (its runner's id in
        figures, logs and the single-active lease; its checkpoints are per partition)."""
        return f"{subscription_id}#member-{self.member}-of-{self.size}"

    def partition_checkpoint_id(self, subscription_id: str, partition: int) -> str:
        """The checkpoint id of ``partition`` within subscription ``subscription_id``."""
        return f"{subscription_id}#partition-{partition}-of-{self.partitions}"

    def partition_checkpoint_ids(self, subscription_id: str) -> list[str]:
        """The checkpoint ids of the partitions this member handles."""
        return [self.partition_checkpoint_id(subscription_id, p) for p in self.owned_partitions]

    def group_checkpoint_ids(self, subscription_id: str) -> list[str]:
        """The checkpoint ids of every partition of the group."""
        return [self.partition_checkpoint_id(subscription_id, p) for p in range(self.partitions)]
