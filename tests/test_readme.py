"""The README's complete programs run as written, and its two commands exist."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
README = (REPOSITORY / "README.md").read_text()
PROGRAMS = [
    block
    for block in re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    if "asyncio.run(" in block
]


def test_readme_has_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "bash scripts/demo.sh" in README
    assert "bash scripts/test.sh" in README
    assert (REPOSITORY / "scripts" / "demo.sh").is_file()
    assert "bash scripts/test.sh" in (REPOSITORY / ".ci" / "run").read_text()


def test_readme_has_programs() -> None:
    assert PROGRAMS


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: f"block-{PROGRAMS.index(p)}")
async def test_readme_program_runs(program: str, dsn: str, tmp_path: Path) -> None:
    script = tmp_path / "readme_program.py"
    script.write_text(program)
    env = {
        **os.environ,
        "EVENTUALI_PG_DSN": dsn,
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
