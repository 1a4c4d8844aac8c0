"""Issue 15, item 4: upstream eventuali's exception names sit in eventuali-pg's error tree, so an
``except`` written with either name catches the right errors."""

from __future__ import annotations

import pytest

from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg import errors as ours
from eventuali_pg import exceptions as upstream
from eventuali_pg._dsn import resolve_dsn


class CompatErrPing(Event):
    n: int = 0


class CompatErrPinger(Aggregate):
    pings: int = 0

    def apply_compat_err_ping(self, event: CompatErrPing) -> None:
        self.pings += 1


def test_upstream_names_are_bases_or_aliases_of_ours() -> None:
    assert upstream.OptimisticConcurrencyError is ours.ConcurrencyError
    assert upstream.EventualiError is ours.EventualiError
    assert upstream.SerializationError is ours.SerializationError
    assert upstream.ConfigurationError is ours.ConfigurationError
    expected_bases = {
        ours.DatabaseUnavailableError: (upstream.DatabaseError, upstream.EventStoreError),
        ours.UnsupportedDatabaseError: (upstream.DatabaseError, ours.ConfigurationError),
        ours.SchemaNotReadyError: (upstream.EventStoreError,),
        ours.StoreClosedError: (upstream.EventStoreError,),
        ours.SerializationError: (upstream.InvalidEventError, ours.InvalidInputError),
        ours.PayloadTooLargeError: (upstream.InvalidEventError,),
        ours.SubscriptionError: (upstream.StreamingError,),
        ours.DuplicateSubscriptionError: (upstream.StreamingError,),
        ours.UnknownSubscriptionError: (upstream.StreamingError,),
        ours.SubscriptionLagged: (upstream.StreamingError,),
        ours.CheckpointError: (upstream.ProjectionError,),
        ours.MissingHandlerError: (NotImplementedError, AttributeError),
    }
    for cls, bases in expected_bases.items():
        for base in bases:
            assert issubclass(cls, base), (cls, base)
    for name in upstream.__all__:
        assert issubclass(getattr(upstream, name), ours.EventualiError)


def test_upstream_constructors_still_work() -> None:
    error = upstream.OptimisticConcurrencyError("conflict", 3, 4)
    assert (error.expected_version, error.actual_version, str(error)) == (3, 4, "conflict")
    missing = upstream.AggregateNotFoundError("user-1", "User")
    assert str(missing) == "Aggregate 'user-1' not found (type: User)"
    assert isinstance(missing, LookupError) and missing.aggregate_id == "user-1"


async def test_a_lost_race_is_caught_as_optimistic_concurrency_error(dsn: str) -> None:
    async with await EventStore.create(dsn) as store:
        first = CompatErrPinger(id="race-1")
        first.apply(CompatErrPing())
        await store.save(first)
        stale_a = await store.load(CompatErrPinger, "race-1")
        stale_b = await store.load(CompatErrPinger, "race-1")
        assert stale_a is not None and stale_b is not None
        stale_a.apply(CompatErrPing(n=1))
        stale_b.apply(CompatErrPing(n=2))
        await store.save(stale_a)
        with pytest.raises(upstream.OptimisticConcurrencyError) as info:
            await store.save(stale_b)
        assert isinstance(info.value, ours.ConcurrencyError)
        assert (info.value.expected_version, info.value.actual_version) == (1, 2)
        assert info.value.aggregate_id == "race-1"


def test_a_missing_handler_is_catchable_as_upstreams_not_implemented_error() -> None:
    class CompatErrNoHandlers(Aggregate):
        pass

    with pytest.raises(NotImplementedError, match="apply_compat_err_ping"):
        CompatErrNoHandlers().apply(CompatErrPing())
    with pytest.raises(ours.MissingHandlerError):
        CompatErrNoHandlers().apply(CompatErrPing())


@pytest.mark.parametrize(
    "url", ["sqlite://:memory:", "sqlite:///tmp/events.db", "events.db", "sqlite+aiosqlite://x"]
)
async def test_a_sqlite_url_says_postgresql_only_and_how_to_get_one(url: str) -> None:
    with pytest.raises(ours.UnsupportedDatabaseError) as info:
        await EventStore.create(url)
    message = str(info.value)
    assert "PostgreSQL only" in message
    assert "pip install 'eventuali-pg[embedded]'" in message
    assert "eventuali-pg server start" in message
    assert "README" in message
    assert isinstance(info.value, upstream.DatabaseError)
    assert isinstance(info.value, ours.ConfigurationError)


async def test_a_sqlite_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVENTUALI_PG_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "sqlite://:memory:")
    with pytest.raises(ours.UnsupportedDatabaseError, match="from DATABASE_URL"):
        resolve_dsn(None)


async def test_another_scheme_is_refused_before_connecting() -> None:
    with pytest.raises(upstream.DatabaseError, match="not a PostgreSQL URL"):
        await EventStore.create("invalid://bad-connection")
    with pytest.raises(ours.ConfigurationError, match="not a PostgreSQL URL"):
        await EventStore.create(connection_string="mysql://root@localhost/db")


def test_postgresql_urls_pass() -> None:
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        assert resolve_dsn(url) == url
    assert resolve_dsn("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"  # driver dropped


async def test_a_bare_event_store_is_a_placeholder_that_says_to_use_create() -> None:
    store = EventStore()  # upstream's two-step construction
    assert isinstance(store, EventStore) and not store._initialized
    with pytest.raises(RuntimeError, match="EventStore not initialized") as info:
        store._ensure_initialized()
    assert isinstance(info.value, ours.StoreNotInitializedError)
    assert isinstance(info.value, upstream.EventStoreError)
    assert r"await EventStore.create(" in str(info.value)
    walker = CompatErrPinger(id="placeholder")
    walker.apply(CompatErrPing())
    with pytest.raises(ours.StoreNotInitializedError):
        await walker_save(store, walker)
    with pytest.raises(ours.StoreNotInitializedError):
        await store.load_events("placeholder")
    with pytest.raises(AttributeError, match="save_events"):
        store.save_events  # type: ignore[attr-defined]  # noqa: B018


async def test_create_called_on_a_placeholder_opens_a_real_store(dsn: str) -> None:
    placeholder = EventStore()
    store = await placeholder.create(dsn)  # upstream's two steps; the result is the store
    try:
        assert type(store) is EventStore and store._initialized
        assert not placeholder._initialized
    finally:
        await store.close()


async def walker_save(store: EventStore, walker: Aggregate) -> None:
    await store.save(walker)


async def test_created_stores_report_initialized(dsn: str) -> None:
    store = await EventStore.create(dsn)
    assert store._initialized
    store._ensure_initialized()
    await store.close()
    assert not store._initialized
