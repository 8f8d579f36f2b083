#!/usr/bin/env bash
# PostgreSQL's restore_command during point-in-time recovery: decrypt one archived file.
#   restore_command = '/opt/sacco/deploy/pitr/restore-wal.sh /var/backups/sacco/wal %f %p'
# (deploy/pitr/restore.sh writes it, with GNUPGHOME and the passphrase file of the key.)
# Arguments: ARCHIVE_DIR WAL_NAME TARGET_PATH. Exits 1 without a word when the archive has no
# such file: that is how recovery learns it has reached the end of the archive.
set -euo pipefail
dir=${1:?archive directory} name=${2:?WAL name (%f)} target=${3:?target path (%p)}
[[ -f "$dir/$name.gpg" ]] || exit 1
passphrase=()
if [[ -n "${BACKUP_GPG_PASSPHRASE_FILE:-}" ]]; then
  passphrase=(--pinentry-mode loopback --passphrase-file "$BACKUP_GPG_PASSPHRASE_FILE")
fi
trap 'rm -f "$target.partial"' EXIT
gpg --batch --yes --quiet "${passphrase[@]}" --decrypt --output "$target.partial" "$dir/$name.gpg"
mv "$target.partial" "$target"
