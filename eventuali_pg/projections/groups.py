"""Consumer groups: one subscription split across N members by aggregate id.

Member ``i`` of a group of ``N`` handles exactly the events whose aggregate id hashes to ``i``:
``zlib.crc32(aggregate_id.encode("utf-8")) % N`` (CRC-32, the IEEE polynomial used by zlib,
gzip and PNG; the same in every process, language and Python version, unlike ``hash()``).
Every event of an aggregate therefore goes to one member, which handles them in global order.
Each member keeps its own checkpoint, ``"<subscription id>#<member>/<size>"``. A group is
rebuilt as a whole, with :func:`~eventuali_pg.projections.reset_group`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import InvalidInputError


def member_for(aggregate_id: str, group_size: int) -> int:
    """The member (0 .. ``group_size`` - 1) that handles the events of ``aggregate_id``."""
    return zlib.crc32(aggregate_id.encode("utf-8")) % group_size


@dataclass(frozen=True)
class ConsumerGroup:
    """Membership of one runner in a consumer group: ``ConsumerGroup(size=3, member=0)``."""

    size: int
    member: int

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InvalidInputError(f"group size must be an integer >= 1, got {self.size!r}")
        if (
            isinstance(self.member, bool)
            or not isinstance(self.member, int)
            or not 0 <= self.member < self.size
        ):
            raise InvalidInputError(
                f"group member must be an integer from 0 to {self.size - 1} (size {self.size}), "
                f"got {self.member!r}"
            )

    def owns(self, aggregate_id: str) -> bool:
        """True when this member handles the events of ``aggregate_id``."""
        return member_for(aggregate_id, self.size) == self.member

    def checkpoint_id(self, subscription_id: str) -> str:
        """This member's checkpoint id within subscription ``subscription_id``."""
        return f"{subscription_id}#{self.member}/{self.size}"

    def group_checkpoint_ids(self, subscription_id: str) -> list[str]:
        """The checkpoint ids of every member of this group (this one included)."""
        return [
            ConsumerGroup(size=self.size, member=member).checkpoint_id(subscription_id)
            for member in range(self.size)
        ]
