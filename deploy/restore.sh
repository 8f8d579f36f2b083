#!/usr/bin/env bash
# Restore a backup into an EMPTY database, then prove the books: verify-ledger must pass.
# Usage: DATABASE_URL=postgresql+psycopg2://.../sacco_restore deploy/restore.sh FILE.dump.gpg
# The private key the backup was encrypted to must be in the restoring user's keyring
# (GNUPGHOME); gpg asks for its passphrase, or reads it from BACKUP_GPG_PASSPHRASE_FILE.
# The decrypted dump is streamed into pg_restore, never written to disk. An old,
# unencrypted FILE.dump (from before backups were encrypted) is restored as it is.
set -euo pipefail
file=${1:?backup file}
url=${DATABASE_URL/postgresql+psycopg2:/postgresql:}
restore=(pg_restore --no-owner --exit-on-error --dbname "$url")
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
