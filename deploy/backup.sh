#!/usr/bin/env bash
# Nightly logical backup of the SACCO database, encrypted before it touches the disk.
# Usage: deploy/backup.sh /var/backups/sacco
#   DATABASE_URL           the database to back up
#   BACKUP_GPG_RECIPIENT   who can read the backup: the path of an exported public key
#                          (gpg --export --armor KEY > backup-public.asc), or a fingerprint
#                          or e-mail of a public key in this user's keyring (GNUPGHOME).
#                          Only the public key lives on this host: the private key, which
#                          restore.sh needs, is kept offline by the SACCO's officers.
#   BACKUP_VERIFY_DATABASE_URL  optional: a scratch database this script may wipe. The dump
#                          is restored into it as it streams (the same bytes gpg encrypts)
#                          and manage.py verify-ledger and verify-audit must pass on it, or
#                          the backup is discarded and the script fails. Without it the
#                          backup is NOT verified, and the script says so.
#   SACCO_ENV_FILE         optional: the settings file manage.py reads for that check
#                          (e.g. /etc/sacco/env); the scratch DATABASE_URL wins over it.
#   BACKUP_FILES           optional: paths backed up with the dump, in one encrypted tar
#                          DIR/files-<UTC time>.tar.gpg: the KYC document folder
#                          (DOCUMENT_DIR) and the configuration (/etc/sacco, which holds
#                          PII_KEYS, PIN_PEPPER and BLIND_INDEX_KEY: without them a restored
#                          database is unreadable). Space-separated absolute paths.
# Writes DIR/sacco-<UTC time>.dump.gpg, mode 0600, in a directory of mode 0700. The dump
# (national IDs are encrypted inside it, but names, phones and balances are not) never
# exists unencrypted on disk: pg_dump streams into gpg (and, to verify, through a pipe
# into pg_restore).
set -euo pipefail
dest=${1:?backup directory}
recipient=${BACKUP_GPG_RECIPIENT:?"BACKUP_GPG_RECIPIENT must name the public key backups are encrypted to (see deploy/backup.sh)"}
if [[ -f "$recipient" ]]; then
  to=(--recipient-file "$recipient")
else
  to=(--recipient "$recipient")
fi
umask 077
mkdir -p "$dest"
chmod 0700 "$dest"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
url=${DATABASE_URL/postgresql+psycopg2:/postgresql:}
out="$dest/sacco-$stamp.dump.gpg"
partial="$out.partial"
work=$(mktemp -d)
trap 'rm -f "$partial"; rm -rf "$work"' EXIT
encrypt=(gpg --batch --yes --quiet --trust-model always "${to[@]}" --encrypt --output "$partial")
if [[ -n "${BACKUP_VERIFY_DATABASE_URL:-}" ]]; then
  scratch=${BACKUP_VERIFY_DATABASE_URL/postgresql+psycopg2:/postgresql:}
  if [[ "$scratch" == "$url" ]]; then
    echo "BACKUP_VERIFY_DATABASE_URL must be a scratch database, not the one backed up" >&2
    exit 2
  fi
  # Wipe the scratch database (every schema the dump brings is in public).
  psql "$scratch" -Xq -v ON_ERROR_STOP=1 \
    -c "DROP SCHEMA IF EXISTS public CASCADE" -c "CREATE SCHEMA public" >/dev/null
  mkfifo "$work/dump"
  pg_restore --no-owner --exit-on-error --single-transaction --dbname "$scratch" <"$work/dump" &
  restorer=$!
  pg_dump --format=custom --no-owner "$url" | tee "$work/dump" | "${encrypt[@]}"
  wait "$restorer" || { echo "backup NOT kept: the dump did not restore into the scratch database" >&2; exit 1; }
  app=$(cd "$(dirname "$0")/.." && pwd)
  for check in verify-ledger verify-audit; do
    if ! (cd "$app" && DATABASE_URL=$BACKUP_VERIFY_DATABASE_URL .venv/bin/python manage.py "$check"); then
      echo "backup NOT kept: $check failed on the restored copy" >&2
      exit 1
    fi
  done
  # No second copy of the members' data left lying about (a failed one stays, to look into).
  psql "$scratch" -Xq -v ON_ERROR_STOP=1 \
    -c "DROP SCHEMA IF EXISTS public CASCADE" -c "CREATE SCHEMA public" >/dev/null
  verified="verified: restored into the scratch database, verify-ledger and verify-audit passed"
else
  pg_dump --format=custom --no-owner "$url" | "${encrypt[@]}"
  verified="NOT verified (set BACKUP_VERIFY_DATABASE_URL to restore it into a scratch database and check the books)"
fi
if [[ -n "${BACKUP_FILES:-}" ]]; then
  read -r -a paths <<<"$BACKUP_FILES"
  files="$dest/files-$stamp.tar.gpg"
  trap 'rm -f "$partial" "$files.partial"; rm -rf "$work"' EXIT
  tar --create --file=- --absolute-names "${paths[@]}" \
    | gpg --batch --yes --quiet --trust-model always "${to[@]}" --encrypt --output "$files.partial"
  chmod 0600 "$files.partial"
  mv "$files.partial" "$files"
  echo "files written: $files (${paths[*]})"
fi
chmod 0600 "$partial"
mv "$partial" "$out"
echo "backup written: $out; $verified"
