"""Finding the database URL and describing it in error messages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ConfigurationError, UnsupportedDatabaseError

DSN_ENVIRONMENT_VARIABLES = ("EVENTUALI_PG_DSN", "DATABASE_URL")


def resolve_dsn(dsn: str | None) -> str:
    """The given DSN, else ``EVENTUALI_PG_DSN``, else ``DATABASE_URL``; raise if none is set.

    A SQLAlchemy-style URL naming a driver (``postgresql+asyncpg://...``, common in
    ``DATABASE_URL``) is accepted: the driver part is dropped (see :func:`strip_driver`).
    """
    if dsn is not None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ConfigurationError(
                "dsn must be a non-empty PostgreSQL URL such as "
                "'postgresql://user:password@localhost:5432/dbname'"
            )
        return strip_driver(check_postgresql_url(dsn))
    for name in DSN_ENVIRONMENT_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return strip_driver(check_postgresql_url(value, source=name))
    raise ConfigurationError(
        "no database given: pass a DSN such as 'postgresql://user:password@localhost:5432/dbname', "
        "or set EVENTUALI_PG_DSN (or DATABASE_URL)"
    )


def strip_driver(dsn: str) -> str:
    """``postgresql+asyncpg://...`` (any ``+driver``) as the plain ``postgresql://...`` that
    asyncpg takes; other URLs unchanged.

    A URL with a driver but another database (``mysql+aiomysql://``) raises
    :class:`ConfigurationError`.
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep or "+" not in scheme:
        return dsn
    base = scheme.split("+", 1)[0].lower()
    if base not in {"postgresql", "postgres"}:
        raise ConfigurationError(
            f"not a PostgreSQL URL (scheme {scheme!r}): eventuali-pg needs "
            "'postgresql://user:password@host:5432/dbname'"
        )
    return f"postgresql://{rest}"


@dataclass(frozen=True)
class DsnTarget:
    """Where a DSN points, for messages (never includes the password)."""

    host: str
    port: int
    database: str
    user: str = ""

    def __str__(self) -> str:
        return f"host {self.host!r}, port {self.port}, database {self.database!r}"


def describe_dsn(dsn: str) -> DsnTarget:
    """Host, port and database a DSN points at, with libpq's defaults filled in."""
    parts = urlsplit(dsn)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = query.get("host") or unquote(parts.hostname or "") or "localhost"
    try:
        port = int(query.get("port") or parts.port or 5432)
    except ValueError:
        port = 5432
    user = unquote(parts.username or "") or query.get("user") or ""
    database = unquote(parts.path.lstrip("/")) or query.get("dbname") or user or "postgres"
    return DsnTarget(host=host, port=port, database=database, user=user)


def sqlalchemy_url(dsn: str) -> str:
    """``dsn`` with the asyncpg driver named, as SQLAlchemy wants it."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        raise ConfigurationError(f"not a PostgreSQL URL: {dsn!r}")
    base = scheme.split("+", 1)[0]
    if base not in {"postgresql", "postgres"}:
        raise ConfigurationError(f"not a PostgreSQL URL (scheme {scheme!r}): use postgresql://...")
    return f"postgresql+asyncpg://{rest}"


POSTGRESQL_SCHEMES = frozenset({"postgresql", "postgres"})
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")

GET_A_POSTGRESQL = (
    "To get a PostgreSQL server on this machine without Docker: `pip install "
    "'eventuali-pg[embedded]'`, then `eventuali-pg server start` prints a URL to use (see "
    '"server: the embedded PostgreSQL" in the eventuali-pg README); then run '
    "`eventuali-pg migrate --dsn URL` (or `await eventuali_pg.migrate(url)`) once and pass "
    "the URL, e.g. 'postgresql://user:password@localhost:5432/dbname'"
)


def check_postgresql_url(dsn: str, *, source: str | None = None) -> str:
    """Return ``dsn`` if it can be a PostgreSQL URL; raise a typed error saying what to do if not.

    ``sqlite://...`` URLs and SQLite file names (which upstream eventuali accepts) raise
    :class:`UnsupportedDatabaseError`; any other ``scheme://`` that is not ``postgresql``/
    ``postgres`` (optionally ``+driver``) raises :class:`ConfigurationError`. DSNs without a
    scheme are left to the driver.
    """
    where = f" (from {source})" if source else ""
    scheme, sep, _ = dsn.strip().partition("://")
    base = scheme.split("+", 1)[0].lower() if sep else ""
    looks_like_sqlite = (
        base.startswith("sqlite")
        or (not sep and dsn.strip().lower().endswith(_SQLITE_SUFFIXES))
        or dsn.strip() == ":memory:"
    )
    if looks_like_sqlite:
        raise UnsupportedDatabaseError(
            f"{dsn!r}{where} is a SQLite database, but eventuali-pg stores events in PostgreSQL "
            f"only. {GET_A_POSTGRESQL}"
        )
    if sep and base not in POSTGRESQL_SCHEMES:
        raise UnsupportedDatabaseError(
            f"{dsn!r}{where} is not a PostgreSQL URL (scheme {scheme!r}); eventuali-pg needs "
            f"'postgresql://user:password@host:port/dbname'. {GET_A_POSTGRESQL}"
        )
    return dsn
