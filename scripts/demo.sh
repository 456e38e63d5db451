#!/usr/bin/env bash
# The README's run command: install, create the demo site (SQLite) and serve it with simulated meters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
exec .venv/bin/python app.py demo "$@"
