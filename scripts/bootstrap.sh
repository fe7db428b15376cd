#!/usr/bin/env bash
# Sourced by scripts/run.sh and scripts/test.sh: make .venv with this package installed.
# Re-installs only when pyproject.toml changes (its hash is kept in .venv/.installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AUTORESEARCH_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "autoresearch_ray needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
stamp="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${EXTRAS}"
if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$stamp" ]; then
    echo "installing autoresearch_ray${EXTRAS:+[$EXTRAS]} into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    echo "$stamp" >"$VENV/.installed"
fi
