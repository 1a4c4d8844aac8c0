"""The built wheel carries every package and the migrations, and migrate() works from it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(out),
            str(REPOSITORY),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = out.glob("eventuali_pg-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def test_wheel_has_every_package_and_the_migrations(unpacked_wheel: Path) -> None:
    source_packages = {
        path.parent.relative_to(REPOSITORY).as_posix()
        for path in (REPOSITORY / "eventuali_pg").rglob("__init__.py")
    }
    for package in source_packages:
        assert (unpacked_wheel / package / "__init__.py").is_file(), package
    shipped = {p.name for p in (unpacked_wheel / "eventuali_pg/migrations/versions").glob("*.py")}
    written = {p.name for p in (REPOSITORY / "migrations/versions").glob("*.py")}
    assert shipped == written
    assert (unpacked_wheel / "eventuali_pg/migrations/env.py").is_file()
    assert (unpacked_wheel / "eventuali_pg/py.typed").is_file()


async def test_migrate_works_from_the_installed_wheel(
    unpacked_wheel: Path, dsn: str, tmp_path: Path
) -> None:
    program = (
        "import asyncio, sys, eventuali_pg\n"
        "from eventuali_pg.migration import migrations_directory\n"
        "print(eventuali_pg.__file__)\n"
        "print(migrations_directory())\n"
        "asyncio.run(eventuali_pg.migrate(sys.argv[1], schema='wheel_check'))\n"
        "print(asyncio.run(eventuali_pg.current_revision(sys.argv[1], schema='wheel_check')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(unpacked_wheel)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        program,
        dsn,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    module_file, migrations, revision = out.decode().split()
    assert Path(module_file).is_relative_to(unpacked_wheel)
    assert Path(migrations).is_relative_to(unpacked_wheel)
    from eventuali_pg.migration import head_revision

    assert revision == head_revision()
