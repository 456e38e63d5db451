#!/usr/bin/env bash
# Regenerate a migration from the models against a scratch SQLite database at head.
# Usage: scripts/make_migration.sh "message"
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
export DATABASE_URL="sqlite+aiosqlite:///$tmp/scratch.db"
.venv/bin/alembic upgrade head
.venv/bin/alembic revision --autogenerate -m "$1"
rm -rf "$tmp"
