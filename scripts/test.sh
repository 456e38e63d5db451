#!/usr/bin/env bash
# The README's test command: install everything, start the servers, run the whole suite
# (every database test runs on SQLite and on PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/venv.sh
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/pytest -q -p no:cacheprovider "$@"
