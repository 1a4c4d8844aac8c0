"""The settings of one EventStore, validated in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._identifiers import validate_identifier
from ..errors import ConfigurationError
from .keys import DEFAULT_KEY_CACHE_SIZE, DEFAULT_KEY_CACHE_TTL
from .sql import DEFAULT_SCHEMA

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
#: The most connections a PostgreSQL server can have (its MAX_BACKENDS); a bigger pool can
#: never fill, and asyncpg allocates a slot per connection up front.
MAX_POOL_SIZE = 2**18 - 1
#: page_size is a row limit of the reads: PostgreSQL ``bigint``.
MAX_PAGE_SIZE = 2**63 - 1


@dataclass(frozen=True)
class StoreOptions:
    """Every ``EventStore.create`` keyword except ``dsn`` and ``streamer``.

    Where: ``schema`` (PostgreSQL schema of the tables), ``channel`` (NOTIFY channel, default
    the schema name). Connections: ``pool_min_size``/``pool_max_size``, ``connect_timeout``
    (seconds), ``statement_cache_size`` (prepared statements per connection; 0 behind
    PgBouncer < 1.21). Writing: ``max_payload_bytes`` (UTF-8 bytes of payload plus metadata
    per event), ``max_batch_events`` (events per coalesced append; 1 turns coalescing off),
    ``max_batch_wait`` (seconds a save may wait for company, 0 to 1). Delivery: ``notify``
    (LISTEN for appends; False polls only), ``poll_interval`` (default 1.0, or 0.2 without
    LISTEN), ``heartbeat_interval``/``heartbeat_timeout``, ``page_size`` (rows per read).
    Personal data: ``key_cache_size`` (subject keys kept in memory), ``key_cache_ttl``
    (seconds a cached key is trusted: how long another process may still decrypt a subject
    after it was forgotten).
    Beyond one server: ``listen_dsn`` (a direct or session-mode URL for LISTEN and session
    advisory locks when ``dsn`` goes through PgBouncer in transaction mode), ``replica_dsn`` (one
    URL or several: hot standbys that serve catch-up reads), ``replica_min_distance`` (a read
    more than this many events behind the primary's head goes to a replica),
    ``replica_max_lag`` (a replica further behind the primary than this many events is not
    used), ``replica_retry_interval`` (longest wait, in seconds, before a failed replica is
    tried again).
    """

    schema: str = DEFAULT_SCHEMA
    channel: str | None = None
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout: float = 10.0
    statement_cache_size: int = 100
    notify: bool = True
    poll_interval: float | None = None
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 5.0
    page_size: int = 1000
    max_batch_events: int = 1000
    max_batch_wait: float = 0.0
    key_cache_size: int = DEFAULT_KEY_CACHE_SIZE
    key_cache_ttl: float = DEFAULT_KEY_CACHE_TTL
    listen_dsn: str | None = field(default=None, repr=False)
    replica_dsn: str | Sequence[str] | None = field(default=None, repr=False)
    replica_min_distance: int = 1000
    replica_max_lag: int = 100_000
    replica_retry_interval: float = 30.0

    @classmethod
    def from_keywords(cls, **keywords: Any) -> StoreOptions:
        """Validate ``keywords`` (unknown names and bad values raise ConfigurationError)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(keywords) - set(names))
        if unknown:
            raise ConfigurationError(
                f"unknown EventStore option(s): {', '.join(unknown)}. Valid options: dsn, "
                f"streamer, {', '.join(names)}"
            )
        options = cls(**keywords)
        options._validate()
        if options.poll_interval is None:
            options = dataclasses.replace(options, poll_interval=1.0 if options.notify else 0.2)
        return options

    @property
    def replica_dsns(self) -> tuple[str, ...]:
        """The replicas' DSNs (empty without replicas)."""
        if self.replica_dsn is None:
            return ()
        if isinstance(self.replica_dsn, str):
            return (self.replica_dsn,)
        return tuple(self.replica_dsn)

    @property
    def notify_channel(self) -> str:
        """The NOTIFY channel (the schema name unless set)."""
        return self.channel if self.channel is not None else self.schema

    @property
    def poll_seconds(self) -> float:
        """Seconds between polls that back up lost notifications."""
        return self.poll_interval if self.poll_interval is not None else 1.0

    def _validate(self) -> None:
        validate_identifier(self.schema, what="schema name")
        validate_identifier(self.notify_channel, what="notification channel")
        for name in (
            "max_payload_bytes",
            "pool_max_size",
            "page_size",
            "max_batch_events",
            "key_cache_size",
        ):
            _positive_int(getattr(self, name), name)
        for name, highest in (("pool_max_size", MAX_POOL_SIZE), ("page_size", MAX_PAGE_SIZE)):
            if getattr(self, name) > highest:
                raise ConfigurationError(
                    f"{name} must be at most {highest}, got {getattr(self, name)!r}"
                )
        if not _is_int(self.pool_min_size) or not 0 <= self.pool_min_size <= self.pool_max_size:
            raise ConfigurationError(
                "pool_min_size must be an integer between 0 and pool_max_size, "
                f"got {self.pool_min_size!r}"
            )
        if not _is_int(self.statement_cache_size) or self.statement_cache_size < 0:
            raise ConfigurationError(
                "statement_cache_size must be an integer >= 0 (0 turns the cache off), got "
                f"{self.statement_cache_size!r}"
            )
        self._validate_servers()
        if not isinstance(self.notify, bool):
            raise ConfigurationError(f"notify must be True or False, got {self.notify!r}")
        seconds = {
            "connect_timeout": self.connect_timeout,
            "heartbeat_interval": self.heartbeat_interval,
            "heartbeat_timeout": self.heartbeat_timeout,
            "key_cache_ttl": self.key_cache_ttl,
            "replica_retry_interval": self.replica_retry_interval,
        }
        if self.poll_interval is not None:
            seconds["poll_interval"] = self.poll_interval
        for name, value in seconds.items():
            if not _is_number(value) or not value > 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")
        if not _is_number(self.max_batch_wait) or not 0 <= self.max_batch_wait <= 1:
            raise ConfigurationError(
                f"max_batch_wait must be a number of seconds from 0 to 1, got "
                f"{self.max_batch_wait!r}"
            )

    def _validate_servers(self) -> None:
        if self.listen_dsn is not None and (
            not isinstance(self.listen_dsn, str) or not self.listen_dsn.strip()
        ):
            raise ConfigurationError(
                "listen_dsn must be a non-empty database URL (a direct or session-mode "
                "connection for LISTEN and session locks), or None"
            )
        replicas = self.replica_dsn
        listed = [replicas] if isinstance(replicas, str) else replicas
        if replicas is not None and (
            not isinstance(listed, (list, tuple))
            or not all(isinstance(r, str) and r.strip() for r in listed)
        ):
            raise ConfigurationError(
                "replica_dsn must be a database URL or a list of them (hot standbys of the "
                "store's database), or None"
            )
        for name in ("replica_min_distance", "replica_max_lag"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: object, name: str) -> None:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
