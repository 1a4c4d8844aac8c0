"""Options for replicas and poolers are checked before anything connects."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.domain import Counter

from eventuali_pg import ConfigurationError, EventStore, SessionUnavailableError
from eventuali_pg.errors import DatabaseError


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"replica_dsn": ""}, "replica_dsn"),
        ({"replica_dsn": ["postgresql://a/b", 3]}, "replica_dsn"),
        ({"replica_dsn": {"postgresql://a/b": 1}}, "replica_dsn"),
        ({"listen_dsn": "  "}, "listen_dsn"),
        ({"listen_dsn": 5}, "listen_dsn"),
        ({"replica_min_distance": -1}, "replica_min_distance"),
        ({"replica_max_lag": 1.5}, "replica_max_lag"),
        ({"replica_retry_interval": 0}, "replica_retry_interval"),
    ],
)
async def test_bad_replica_and_listen_options_are_refused(
    options: dict[str, Any], says: str
) -> None:
    # An unreachable port: the options must be refused before any connection is tried.
    with pytest.raises(ConfigurationError, match=says):
        await EventStore.create("postgresql://nobody@127.0.0.1:1/none", **options)


async def test_replica_dsns_and_stats_without_replicas(dsn: str) -> None:
    async with await EventStore.create(
        dsn, replica_dsn="postgresql://x@127.0.0.1:1/y", replica_min_distance=0
    ) as store:
        assert store.options.replica_dsns == ("postgresql://x@127.0.0.1:1/y",)
        assert "postgresql://x" not in repr(store.options)
        counter = Counter(id="c")
        counter.increment()
        counter.increment()
        await store.save(counter)
        # An unreachable replica: the read is served by the primary and the replica set aside.
        events = await store.load_events_from_position(0, replica=True)
        assert [e.global_position for e in events] == [1, 2]
        (stats,) = store.replica_stats()
        assert stats.failures == 1 and stats.reads == 0 and stats.head is None
        assert stats.last_error is not None and stats.replica.startswith("host '127.0.0.1'")
    async with await EventStore.create(dsn) as store:
        assert store.replica_stats() == [] and await store.check_replicas() == []


def test_session_unavailable_is_a_configuration_and_database_error() -> None:
    assert issubclass(SessionUnavailableError, ConfigurationError)
    assert issubclass(SessionUnavailableError, DatabaseError)
