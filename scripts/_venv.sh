# Sourced by scripts/test.sh and scripts/demo.sh: make sure a virtualenv with eventuali-pg and the
# given extras exists, and set $venv to it. Needs only Python 3.11+.
#
#   EVENTUALI_PG_VENV  where the virtualenv lives (default: .venv in the repository)
#   PYTHON             which interpreter creates it (default: the newest python3.1x found)

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
    echo "needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

ensure_venv() {
    local extras="$1"
    venv="${EVENTUALI_PG_VENV:-.venv}"
    if [[ ! -x "$venv/bin/python" ]]; then
        local python
        python="$(pick_python)"
        echo "==> creating virtualenv $venv with $("$python" --version 2>&1)" >&2
        "$python" -m venv "$venv"
    fi
    # Reinstall only when the dependencies or the extras asked for changed.
    local stamp="$venv/.eventuali-pg-installed"
    local wanted
    wanted="$(cksum <pyproject.toml) [$extras]"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        echo "==> installing eventuali-pg[$extras] into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
        echo "$wanted" >"$stamp"
    fi
}
