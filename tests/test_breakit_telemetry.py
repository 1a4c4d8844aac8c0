"""A tracing pipeline that fails never breaks a save or a projection: a span processor raising
in ``on_start`` or ``on_end`` (the SDK passes that to the caller) and an exporter raising. The
provider is global, so the workload runs in a process of its own."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

PROGRAM = Path(__file__).parent / "helpers" / "breakit_otel_program.py"


@pytest.mark.parametrize("mode", ["start", "end"])
async def test_a_raising_span_processor_breaks_no_save_and_no_projection(
    dsn: str, tmp_path: Path, mode: str
) -> None:
    out = tmp_path / "result.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROGRAM),
        mode,
        dsn,
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, f"{stdout.decode()}\n{stderr.decode()}"
    result: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    # The save returns its position (it committed: raising would invite a duplicate retry).
    assert "save_error" not in result, result
    assert result["position"] == result["head"] == 1
    assert result["handled"] == [1]
