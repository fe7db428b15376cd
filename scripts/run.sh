#!/usr/bin/env bash
# Quick start, command 1: run a research query on the embedded default (a local Ray, no Redis).
#   scripts/run.sh "What is a lease?"            # any `autoresearch-ray run` arguments work
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" dev
if [ "$#" -eq 0 ]; then
    set -- "How do I run several coroutines concurrently and collect their results?"
fi
exec "$VENV/bin/autoresearch-ray" run "$@"
