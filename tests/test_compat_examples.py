"""Issue 15: the patterns upstream eventuali's examples use, as our own programs written from its
documented API (tests/compat_programs/), run with only eventuali_pg imports and a PostgreSQL
URL. Each prints "ok" after checking what it did."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
PROGRAMS = sorted((Path(__file__).parent / "compat_programs").glob("*.py"))


def test_there_are_programs() -> None:
    assert len(PROGRAMS) >= 5


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
async def test_upstream_pattern_runs(program: Path, dsn: str) -> None:
    env = {
        **os.environ,
        "EVENTUALI_PG_DSN": dsn,
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(program),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert output.decode().strip().endswith("ok"), output.decode()
