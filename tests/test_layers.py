"""The layers stay apart (issue 18): only ``eventuali_pg._db`` imports the driver, and
``store/`` (like ``codec/`` and ``_db/``) never imports ``stream/`` or ``projections/`` at run
time (type annotations aside)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "eventuali_pg"


def runtime_imports(path: Path) -> list[str]:
    """Modules imported by ``path`` outside ``if TYPE_CHECKING:`` blocks (relative ones
    resolved against the package)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    found.append(".".join([*base, child.module or ""]).rstrip("."))
                else:
                    found.append(child.module or "")
            visit(child)

    visit(tree)
    return found


def test_only_the_database_layer_imports_the_driver() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(m == "asyncpg" or m.startswith("asyncpg.") for m in runtime_imports(path))
    )
    assert importers and all(name.startswith("_db/") for name in importers), importers


def test_the_store_never_imports_streaming_or_projections() -> None:
    for folder in ("store", "codec", "_db"):
        for path in (PACKAGE / folder).rglob("*.py"):
            for module in runtime_imports(path):
                assert not module.startswith(
                    ("eventuali_pg.stream", "eventuali_pg.projections", "eventuali_pg.web")
                ), f"{path.relative_to(PACKAGE)} imports {module}"
