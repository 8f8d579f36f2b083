#!/usr/bin/env bash
# Restore a backup into an EMPTY database, then prove the books: verify-ledger must pass.
# Usage: DATABASE_URL=postgresql+psycopg2://.../sacco_restore deploy/restore.sh FILE.dump
set -euo pipefail
file=${1:?dump file}
url=${DATABASE_URL/postgresql+psycopg2:/postgresql:}
pg_restore --no-owner --exit-on-error --dbname "$url" "$file"
cd "$(dirname "$0")/.."
.venv/bin/python manage.py verify-ledger
