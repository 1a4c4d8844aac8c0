"""Run upstream eventuali's example scripts on eventuali-pg, changed only in imports and URL.

    python scripts/upstream_examples.py UPSTREAM_EXAMPLES_DIR ADMIN_DSN [NAME ...]

UPSTREAM_EXAMPLES_DIR is the ``examples/`` folder of a checkout of upstream eventuali
(github.com/primevalai/onyx-octopus); nothing of it is copied into this repository. For each
script (default: the 20 that use the event store), this creates a fresh database next to
ADMIN_DSN's (``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it, writes a copy of
the script to a scratch directory with ``eventuali`` replaced by ``eventuali_pg`` in its imports
and ``sqlite://:memory:`` by the new database's URL, runs it, drops the database and prints the
exit code. Logs stay in the scratch directory.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

import eventuali_pg

DEFAULT_NAMES = [
    "01_basic_event_store_simple", "02_aggregate_lifecycle", "03_error_handling",
    "04_performance_testing", "05_multi_aggregate_simple", "06_event_versioning",
    "07_custom_event_subclasses", "07_saga_patterns", "08_projections", "09_cqrs_patterns",
    "10_event_replay", "11_distributed_events", "12_microservices_integration",
    "13_realtime_dashboards", "14_production_monitoring", "15_advanced_patterns",
    "16_enterprise_features", "basic_usage", "bug_report_fix_test", "streaming_example",
]  # fmt: skip


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _ported(source: str, url: str) -> str:
    source = re.sub(r"\bfrom eventuali\b", "from eventuali_pg", source)
    source = re.sub(r"^(\s*)import eventuali\b", r"\1import eventuali_pg as eventuali", source,
                    flags=re.MULTILINE)  # fmt: skip
    return source.replace("sqlite://:memory:", url)


async def _run_one(examples: Path, admin_dsn: str, name: str, scratch: Path) -> int:
    database = "upstream_example_" + re.sub(r"[^a-z0-9_]", "_", name.lower())
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
        url = _with_database(admin_dsn, database)
        await eventuali_pg.migrate(url)
        script = scratch / f"{name}.py"
        script.write_text(_ported((examples / f"{name}.py").read_text(), url))
        with (scratch / f"{name}.log").open("w") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(script), cwd=scratch, stdout=log, stderr=subprocess.STDOUT
            )
            return await asyncio.wait_for(process.wait(), 600)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    examples, admin_dsn, names = Path(argv[0]), argv[1], argv[2:] or DEFAULT_NAMES
    scratch = Path(tempfile.mkdtemp(prefix="upstream-examples-"))
    failed = 0
    for name in names:
        code = await _run_one(examples, admin_dsn, name, scratch)
        failed += code != 0
        print(f"{name}: exit {code}")
    print(f"logs in {scratch}; {len(names) - failed} of {len(names)} exited 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
