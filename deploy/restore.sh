#!/usr/bin/env bash
# Restore a backup into an EMPTY database, then prove the books: verify-ledger and
# verify-audit must pass.
# Usage: DATABASE_URL=postgresql+psycopg2://.../sacco_restore \
#          deploy/restore.sh [--env-file /etc/sacco/env] FILE.dump.gpg
# DATABASE_URL (the target) must be given on the command line; --env-file (or SACCO_ENV_FILE)
# is the settings file manage.py reads for the checks (in production every secret must be
# set), with the DATABASE_URL given here winning over the one in the file.
# The private key the backup was encrypted to must be in the restoring user's keyring
# (GNUPGHOME); gpg asks for its passphrase, or reads it from BACKUP_GPG_PASSPHRASE_FILE.
# The decrypted dump is streamed into pg_restore, never written to disk, in one transaction:
# a restore that fails leaves the database empty, so it can simply be run again. It refuses
# (exit 3) a database that already holds tables. An old, unencrypted FILE.dump (from before
# backups were encrypted) is restored as it is.
set -euo pipefail
usage() { sed -n '4,5p' "$0" | sed 's/^# //' >&2; exit 2; }
if [[ "${1:-}" == "--env-file" ]]; then
  [[ -n "${2:-}" ]] || usage
  export SACCO_ENV_FILE=$2
  shift 2
fi
file=${1:-}
[[ -n "$file" && $# -eq 1 ]] || usage
[[ -n "${DATABASE_URL:-}" ]] || { echo "restore: set DATABASE_URL to the (empty) database to restore into" >&2; exit 2; }
[[ -f "$file" ]] || { echo "restore: no backup file $file" >&2; exit 2; }
if [[ -n "${SACCO_ENV_FILE:-}" && ! -r "$SACCO_ENV_FILE" ]]; then
  echo "restore: cannot read the settings file $SACCO_ENV_FILE" >&2
  exit 2
fi
url=${DATABASE_URL/postgresql+psycopg2:/postgresql:}
tables=$(psql "$url" -XAtq -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'") || { echo "restore: cannot connect to the target database" >&2; exit 2; }
if [[ "$tables" != 0 ]]; then
  echo "restore: the target database is not empty ($tables tables, views or sequences): refusing to" \
    "restore over it. Restore into a new database (createdb), or drop and recreate this one." >&2
  exit 3
fi
restore=(pg_restore --no-owner --exit-on-error --single-transaction --dbname "$url")
if [[ "$file" == *.gpg ]]; then
  passphrase=()
  if [[ -n "${BACKUP_GPG_PASSPHRASE_FILE:-}" ]]; then
    passphrase=(--pinentry-mode loopback --passphrase-file "$BACKUP_GPG_PASSPHRASE_FILE")
  fi
  gpg --batch --quiet "${passphrase[@]}" --decrypt "$file" | "${restore[@]}"
else
  echo "warning: $file is not encrypted (an old backup?): restoring it as it is" >&2
  "${restore[@]}" "$file"
fi
cd "$(dirname "$0")/.."
.venv/bin/python manage.py verify-ledger
.venv/bin/python manage.py verify-audit
