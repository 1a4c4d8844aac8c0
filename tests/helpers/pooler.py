"""A throw-away PgBouncer in transaction mode in front of the suite's server, for the pooler
tests. It runs the distribution's ``pgbouncer`` (as the ``postgres`` OS user when the suite runs
as root: PgBouncer refuses root) with a generated configuration in a temporary folder, on a free
port; ``stop()`` always stops it and deletes the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from helpers.replication import free_port, server_user

#: Set to 1 (as ``.ci/run`` does) to fail instead of skipping when PgBouncer cannot be run.
REQUIRE_ENV = "EVENTUALI_PG_REQUIRE_PGBOUNCER"


def find_pgbouncer() -> Path | None:
    """The ``pgbouncer`` binary, None when it is not installed."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )
    return Path(found) if found else None


class PgBouncer:
    """PgBouncer with ``pool_mode = transaction`` forwarding every database to one server."""

    def __init__(self, binary: Path, server_host: str, server_port: int, user: str) -> None:
        self.binary = binary
        self.base = Path(tempfile.mkdtemp(prefix="eventuali-pg-pgbouncer-"))
        self.port = free_port()
        self.user = user
        owner = server_user()
        config = self.base / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.base}\n"
            "auth_type = trust\n"
            f"auth_file = {self.base / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 8\nmax_client_conn = 200\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.base / 'pgbouncer.log'}\n"
            f"pidfile = {self.base / 'pgbouncer.pid'}\n"
        )
        (self.base / "userlist.txt").write_text(f'"{user}" ""\n')
        if owner is not None:
            for path in (self.base, config, self.base / "userlist.txt"):
                os.chown(path, *owner)
        self._process: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str) -> str:
        """A URL of ``database`` through this PgBouncer."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start PgBouncer and wait until it accepts connections."""
        command = [str(self.binary), str(self.base / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # A session of its own: stop() signals the whole group, since runuser does not pass
        # the signal on to pgbouncer (which then outlived every test run).
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                log = self.base / "pgbouncer.log"
                text = log.read_text() if log.exists() else ""
                raise RuntimeError(f"pgbouncer exited ({self._process.returncode}):\n{text}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("pgbouncer did not start listening within 30 s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop PgBouncer and runuser (SIGTERM to their process group, then SIGKILL) and
        delete its folder."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            deadline = time.monotonic() + 10
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(self.base, ignore_errors=True)


def _group_alive(group: int) -> bool:
    """True while a process of process group ``group`` is still running."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
