#!/usr/bin/env bash
# Nightly logical backup of the SACCO database, encrypted before it touches the disk.
# Usage: deploy/backup.sh /var/backups/sacco
#   DATABASE_URL           the database to back up
#   BACKUP_GPG_RECIPIENT   who can read the backup: the path of an exported public key
#                          (gpg --export --armor KEY > backup-public.asc), or a fingerprint
#                          or e-mail of a public key in this user's keyring (GNUPGHOME).
#                          Only the public key lives on this host: the private key, which
#                          restore.sh needs, is kept offline by the SACCO's officers.
# Writes DIR/sacco-<UTC time>.dump.gpg, mode 0600, in a directory of mode 0700. The dump
# (national IDs are encrypted inside it, but names, phones and balances are not) never
# exists unencrypted on disk: pg_dump streams into gpg.
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
trap 'rm -f "$partial"' EXIT
pg_dump --format=custom --no-owner "$url" \
  | gpg --batch --yes --quiet --trust-model always "${to[@]}" --encrypt --output "$partial"
chmod 0600 "$partial"
mv "$partial" "$out"
echo "backup written: $out"
