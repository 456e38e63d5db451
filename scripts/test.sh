#!/usr/bin/env bash
# The README's test command: install everything, start the servers, run the whole suite
# (every database test runs on SQLite and on PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/venv.sh
export PYTHONDONTWRITEBYTECODE=1
# Dependency audit: reported on every run; a finding is printed for people to act on, and a
# vulnerability database that cannot be reached from this machine does not stop the tests.
timeout 180 .venv/bin/pip-audit --skip-editable --progress-spinner off 2>&1 | tail -n 20 \
  || echo "pip-audit: could not complete (see above)"
.venv/bin/pytest -q -p no:cacheprovider "$@"
