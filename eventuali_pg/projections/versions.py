"""Projection versions: rebuild a read model side by side, then switch.

A projection declares ``version = 2`` (class attribute). Its runner then keeps checkpoints and
dead letters of its own (subscription ``"<id>@v2"``; version 1 keeps the plain ``"<id>"``),
so it replays the whole history into its own read model while version 1 keeps running and
serving. Each version is recorded in ``projection_versions`` when its runner first starts:

* ``replay_until``: the head at that moment. Events up to it are a *replay*: the runner sets
  ``projection.replaying`` while handling them (suppress e-mails and webhooks there), and a
  projection with ``skip_replay = True`` does not get them at all;
* ``active``: the version the application serves. The first version recorded for a
  subscription is active; :func:`activate` switches once another has caught up, and
  :func:`retire` then removes an inactive version's checkpoints, dead letters and record
  (stop its runners first, and drop its read model yourself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InvalidInputError
from ._db import using
from .checkpoints import check_subscription_id
from .sql import projection_sql

if TYPE_CHECKING:
    from ..store.event_store import EventStore


def versioned_id(subscription_id: str, version: int) -> str:
    """The subscription id a version runs under (version 1: the id itself)."""
    return subscription_id if version == 1 else f"{subscription_id}@v{version}"


def check_version(value: object) -> int:
    """A projection version: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"a projection version must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class ProjectionVersion:
    """One recorded version of a projection, with its progress."""

    subscription_id: str
    version: int
    replay_until: int
    active: bool
    checkpoint: int

    @property
    def replayed(self) -> bool:
        """True once its checkpoint has reached the head recorded when it started."""
        return self.checkpoint >= self.replay_until


async def register(store: EventStore, subscription_id: str, version: int, checkpoint: int) -> int:
    """Record ``version`` if it is new; return its ``replay_until``. A version first seen with
    a checkpoint already stored (deployed before versions were recorded) replays nothing."""
    sql = projection_sql(store.schema)
    head = await store.get_global_position()  # before borrowing: never hold one, await another
    async with using(store, None) as conn:
        row = await conn.fetchrow(
            sql.version_register, subscription_id, version, checkpoint if checkpoint else head
        )
    assert row is not None
    return int(row["replay_until"])


async def restart_replay(store: EventStore, subscription_id: str, version: int) -> None:
    """After a reset: events up to the current head are a replay again."""
    sql = projection_sql(store.schema)
    head = await store.get_global_position()
    async with using(store, None) as conn:
        await conn.execute(sql.version_replay_from, subscription_id, version, head)


async def versions(
    store: EventStore, subscription_id: str | None = None
) -> list[ProjectionVersion]:
    """Every recorded version (of ``subscription_id``, or of all), with its lowest checkpoint."""
    sql = projection_sql(store.schema)
    async with using(store, None) as conn:
        rows = await conn.fetch(sql.version_list, subscription_id)
    return [
        ProjectionVersion(
            row["subscription_id"],
            int(row["version"]),
            int(row["replay_until"]),
            bool(row["active"]),
            int(row["checkpoint"] or 0),
        )
        for row in rows
    ]


async def active_version(store: EventStore, subscription_id: str) -> int | None:
    """The version of ``subscription_id`` the application serves (None if none recorded)."""
    for recorded in await versions(store, subscription_id):
        if recorded.active:
            return recorded.version
    return None


async def activate(
    store: EventStore, subscription_id: str, version: int, *, force: bool = False
) -> None:
    """Make ``version`` the active one. Refused while it is still replaying (its checkpoint is
    below the head recorded when it started) unless ``force``."""
    check_subscription_id(subscription_id)
    check_version(version)
    recorded = {v.version: v for v in await versions(store, subscription_id)}
    target = recorded.get(version)
    if target is None:
        raise ConfigurationError(
            f"projection {subscription_id!r} has no version {version} recorded; start its "
            "runner first (versions are recorded when their runner starts)"
        )
    if not target.replayed and not force:
        raise ConfigurationError(
            f"version {version} of projection {subscription_id!r} is still replaying (at "
            f"{target.checkpoint} of {target.replay_until}); wait until it has caught up "
            "(runner.wait_for_checkpoint(...)), or pass force=True"
        )
    sql = projection_sql(store.schema)
    async with using(store, None) as conn, conn.transaction():
        await conn.execute(sql.version_activate, subscription_id, version)


async def retire(store: EventStore, subscription_id: str, version: int) -> None:
    """Remove an inactive version: its checkpoints, dead letters and record, in one
    transaction. Stop its runners first; its read model is the application's to drop."""
    check_subscription_id(subscription_id)
    check_version(version)
    recorded = {v.version: v for v in await versions(store, subscription_id)}
    if version in recorded and recorded[version].active:
        raise ConfigurationError(
            f"version {version} of projection {subscription_id!r} is the active one; activate "
            "another version before retiring it"
        )
    name = versioned_id(subscription_id, version)
    sql = projection_sql(store.schema)
    async with using(store, None) as conn, conn.transaction():
        await conn.execute(sql.version_retire_checkpoints, name, f"{name}#%")
        await conn.execute(sql.dead_letter_delete_all, name)
        await conn.execute(sql.version_delete, subscription_id, version)
