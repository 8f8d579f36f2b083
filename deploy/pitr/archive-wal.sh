#!/usr/bin/env bash
# PostgreSQL's archive_command: copy one finished WAL segment into the archive, encrypted.
# postgresql.conf (see docs/operators/backups.md, "Point-in-time recovery"):
#   archive_mode = on
#   archive_timeout = 60
#   archive_command = '/opt/sacco/deploy/pitr/archive-wal.sh /var/backups/sacco/wal /etc/sacco/backup-public.asc %p %f'
# Arguments: ARCHIVE_DIR RECIPIENT WAL_PATH WAL_NAME. RECIPIENT is what BACKUP_GPG_RECIPIENT
# is for deploy/backup.sh: an exported public key file, or a key in the keyring (GNUPGHOME).
# Writes ARCHIVE_DIR/WAL_NAME.gpg (0600) and WAL_NAME.sha256 (the digest of the clear segment,
# so a segment PostgreSQL archives twice after a crash is recognised as the same one). The
# segment is encrypted as it is read: no clear copy is written. Exit 0 only once the file is
# complete and renamed into place; PostgreSQL keeps the segment and retries otherwise.
set -euo pipefail
dir=${1:?archive directory} recipient=${2:?recipient} wal=${3:?WAL path (%p)} name=${4:?WAL name (%f)}
if [[ -f "$recipient" ]]; then to=(--recipient-file "$recipient"); else to=(--recipient "$recipient"); fi
umask 077
mkdir -p "$dir"
out="$dir/$name.gpg"
digest=$(sha256sum <"$wal" | cut -d' ' -f1)
if [[ -e "$out" ]]; then
  # Archived before (PostgreSQL crashed before it noted the success): the same segment is
  # success, a different one with the same name must never overwrite it.
  if [[ -f "$dir/$name.sha256" && "$(cat "$dir/$name.sha256")" == "$digest" ]]; then exit 0; fi
  echo "archive-wal: $out exists with different content: refusing to overwrite" >&2
  exit 1
fi
partial="$out.partial"
trap 'rm -f "$partial" "$dir/$name.sha256.partial"' EXIT
gpg --batch --yes --quiet --trust-model always "${to[@]}" --encrypt --output "$partial" "$wal"
echo "$digest" >"$dir/$name.sha256.partial"
sync "$partial" "$dir/$name.sha256.partial"
mv "$dir/$name.sha256.partial" "$dir/$name.sha256"
mv "$partial" "$out"
sync "$dir"
