#!/usr/bin/env bash
# Quick start, command 2: the whole test suite (real Ray, real Redis, real SQLite).
# Uses REDIS_URL when set; otherwise the tests start a private redis-server on a free port.
#   scripts/test.sh                 # everything, slow and chaos tests included
#   scripts/test.sh -m "not slow"   # any pytest arguments work
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" dev
if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_URL:-}" ]; then
    echo "the tests need redis-server (apt-get install redis-server) or REDIS_URL" >&2
    exit 2
fi
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
