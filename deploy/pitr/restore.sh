#!/usr/bin/env bash
# Point-in-time recovery: lay a base backup into a fresh data directory and tell PostgreSQL
# to replay the WAL archive up to the latest segment or to a moment.
# Usage: deploy/pitr/restore.sh --base BASE.tar.gpg --wal-archive DIR --pgdata NEW_DATA_DIR
#            [--target-time 'YYYY-MM-DD HH:MM:SS+00'] [--port PORT]
#   GNUPGHOME, BACKUP_GPG_PASSPHRASE_FILE   the officers' private key, as for deploy/restore.sh
# Run it as the user the server runs as (postgres). It refuses a data directory that is not
# empty, checks the backup against its manifest (pg_verifybackup), and writes the recovery
# settings into NEW_DATA_DIR/postgresql.auto.conf with recovery.signal. It does not start
# the server: start it (pg_ctl -D NEW_DATA_DIR start, or pg_ctlcluster), it replays the WAL,
# stops at the target and is promoted, then run manage.py verify-ledger and verify-audit.
# archive_mode is turned off in the copy: a restored server must not write its new timeline
# into the archive it was restored from until an operator decides it is the primary.
set -euo pipefail
usage() { sed -n '4,6p' "$0" | sed 's/^# //' >&2; exit 2; }
base='' archive='' pgdata='' target='' port=''
while (($#)); do
  (($# >= 2)) || usage
  case "$1" in
    --base) base=${2:-}; shift 2 ;;
    --wal-archive) archive=${2:-}; shift 2 ;;
    --pgdata) pgdata=${2:-}; shift 2 ;;
    --target-time) target=${2:-}; shift 2 ;;
    --port) port=${2:-}; shift 2 ;;
    *) echo "restore: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n "$base" && -n "$archive" && -n "$pgdata" ]] || usage
[[ -f "$base" ]] || { echo "restore: no base backup $base" >&2; exit 2; }
[[ -d "$archive" ]] || { echo "restore: no WAL archive directory $archive" >&2; exit 2; }
if [[ -e "$pgdata" && -n "$(ls -A "$pgdata" 2>/dev/null)" ]]; then
  echo "restore: $pgdata is not empty: restore only into an empty data directory (move the old one aside)" >&2
  exit 3
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$pgdata"
chmod 0700 "$pgdata"
passphrase=()
if [[ -n "${BACKUP_GPG_PASSPHRASE_FILE:-}" ]]; then
  passphrase=(--pinentry-mode loopback --passphrase-file "$BACKUP_GPG_PASSPHRASE_FILE")
fi
gpg --batch --quiet "${passphrase[@]}" --decrypt "$base" | tar -x -C "$pgdata"
if [[ -f "$pgdata/backup_manifest" ]]; then
  pg_verifybackup --no-parse-wal --quiet "$pgdata"
fi
quote() { printf "'%s'" "${1//\'/\'\'}"; }
command="$here/restore-wal.sh $archive %f %p"
if [[ -n "${BACKUP_GPG_PASSPHRASE_FILE:-}" ]]; then
  command="BACKUP_GPG_PASSPHRASE_FILE=$BACKUP_GPG_PASSPHRASE_FILE $command"
fi
if [[ -n "${GNUPGHOME:-}" ]]; then command="GNUPGHOME=$GNUPGHOME $command"; fi
{
  echo "# written by deploy/pitr/restore.sh from $(basename "$base") at $(date -u +%FT%TZ)"
  echo "restore_command = $(quote "$command")"
  echo "recovery_target_timeline = 'latest'"
  if [[ -n "$target" ]]; then
    echo "recovery_target_time = $(quote "$target")"
    echo "recovery_target_inclusive = off"
  fi
  echo "recovery_target_action = 'promote'"
  echo "archive_mode = off"
  if [[ -n "$port" ]]; then echo "port = $port"; fi
} >>"$pgdata/postgresql.auto.conf"
touch "$pgdata/recovery.signal"
echo "restored $(basename "$base") into $pgdata; recovery to ${target:-the end of the archive} on start"
