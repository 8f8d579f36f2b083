#!/usr/bin/env bash
# A base backup for point-in-time recovery: pg_basebackup, streamed into gpg.
# Usage: deploy/pitr/base-backup.sh BASE_DIR
#   PITR_CONNINFO          libpq connection of a role with REPLICATION (default: the local
#                          server over its socket as the invoking user, e.g. postgres)
#   BACKUP_GPG_RECIPIENT   the public key, as for deploy/backup.sh
# Writes BASE_DIR/base-<UTC time>.tar.gpg (0600, in a 0700 directory) and beside it
# base-<UTC time>.start-wal, the name of the first WAL segment the backup needs (clear text:
# deploy/pitr/prune.sh keeps every archived segment from the oldest kept backup's on).
# The backup carries no WAL (-X none): it is restored with the WAL archive that
# archive-wal.sh fills, and pg_basebackup waits until the last segment it needs is archived.
set -euo pipefail
dest=${1:?base backup directory}
recipient=${BACKUP_GPG_RECIPIENT:?"BACKUP_GPG_RECIPIENT must name the public key backups are encrypted to (see deploy/backup.sh)"}
if [[ -f "$recipient" ]]; then to=(--recipient-file "$recipient"); else to=(--recipient "$recipient"); fi
conninfo=${PITR_CONNINFO:-}
umask 077
mkdir -p "$dest"
chmod 0700 "$dest"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$dest/base-$stamp.tar.gpg"
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$out.partial"' EXIT
# One tar on stdout (the tablespace and backup_manifest), encrypted as it streams; a copy
# of the stream goes through a pipe to tar, which keeps only backup_label (its START WAL
# LOCATION names the first segment the backup needs).
mkfifo "$work/stream"
tar -xO -f "$work/stream" backup_label >"$work/label" &
reader=$!
pg_basebackup ${conninfo:+--dbname="$conninfo"} --pgdata=- --format=tar --wal-method=none \
    --checkpoint=fast --label="sacco-base-$stamp" 2>"$work/log" \
  | tee "$work/stream" \
  | gpg --batch --yes --quiet --trust-model always "${to[@]}" --encrypt --output "$out.partial" \
  || { cat "$work/log" >&2; exit 1; }
wait "$reader"
# "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)"
first=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]\{24\}\))$/\1/p' "$work/label")
[[ -n "$first" ]] || { echo "base-backup: no START WAL LOCATION in the backup's backup_label" >&2; exit 1; }
echo "$first" >"$dest/base-$stamp.start-wal"
chmod 0600 "$out.partial"
mv "$out.partial" "$out"
echo "base backup written: $out (needs the archived WAL from $first on)"
