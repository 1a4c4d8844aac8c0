"""Every script in examples/ runs to completion against the test database."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPOSITORY / "examples").glob("[0-9][0-9]_*.py"))


def test_the_examples_are_there() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
async def test_example_runs(script: Path, dsn: str) -> None:
    env = {
        **os.environ,
        "EVENTUALI_PG_DSN": dsn,
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=script.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "Traceback" not in text
