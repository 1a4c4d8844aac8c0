#!/usr/bin/env bash
# The demo on a fresh machine: needs only Python 3.11+ (no PostgreSQL, no Docker).
#
#   bash scripts/demo.sh [eventuali-pg demo arguments, e.g. --events 5000]
#
# Creates (or reuses) a virtualenv in .venv, installs eventuali-pg with the embedded PostgreSQL,
# and runs `eventuali-pg demo`: writers, filtered live subscribers, one catching up from an
# earlier position, one too slow for its buffer, and what each received.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_venv.sh
ensure_venv "test,embedded"

exec "$venv/bin/eventuali-pg" demo "$@"
