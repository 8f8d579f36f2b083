#!/usr/bin/env bash
# Retention for point-in-time recovery: delete base backups older than DAYS and the archived
# WAL that no kept base backup needs.
# Usage: deploy/pitr/prune.sh BASE_DIR WAL_DIR DAYS
# * A base backup is kept while it is younger than DAYS (by the UTC time in its name); the
#   newest one is always kept, however old, so pruning can never leave nothing to restore.
# * Every archived segment from the oldest kept backup's start segment (its .start-wal file)
#   on is kept; older ones go: the same rule as pg_archivecleanup, here applied to the
#   encrypted names (NAME.gpg, NAME.sha256, NAME.<offset>.backup.gpg). Timeline history
#   files (*.history.gpg) are tiny and always kept.
# Recovery is possible to any moment from the oldest kept backup's end to the newest WAL.
set -euo pipefail
base=${1:?base backup directory} wal=${2:?WAL archive directory} days=${3:?days to keep}
[[ "$days" =~ ^[0-9]+$ ]] || { echo "prune: DAYS must be a whole number of days, not '$days'" >&2; exit 2; }
cutoff=$(date -u -d "-$days days" +%Y%m%dT%H%M%SZ)
shopt -s nullglob
backups=("$base"/base-*.tar.gpg)  # the glob sorts by name, i.e. by time
(( ${#backups[@]} > 0 )) || { echo "prune: no base backup in $base: nothing pruned" >&2; exit 1; }
kept=()
for ((i = 0; i < ${#backups[@]}; i++)); do
  file=${backups[i]} stamp=${backups[i]##*/base-}; stamp=${stamp%.tar.gpg}
  if [[ "$stamp" < "$cutoff" ]] && (( i < ${#backups[@]} - 1 )); then
    rm -f -- "$file" "${file%.tar.gpg}.start-wal"
    echo "deleted base backup $file"
  else
    kept+=("$file")
  fi
done
oldest=${kept[0]%.tar.gpg}.start-wal
[[ -f "$oldest" ]] || { echo "prune: $oldest is missing: no WAL pruned" >&2; exit 1; }
needed=$(cat "$oldest")
[[ "$needed" =~ ^[0-9A-F]{24}$ ]] || { echo "prune: $oldest does not name a WAL segment" >&2; exit 1; }
removed=0
for file in "$wal"/*; do
  name=${file##*/} segment=${name%%.*}
  # compare log and segment numbers, not the timeline (as pg_archivecleanup does)
  if [[ "$segment" =~ ^[0-9A-F]{24}$ && "${segment:8}" < "${needed:8}" ]]; then
    rm -f -- "$file"
    removed=$((removed + 1))
  fi
done
echo "kept ${#kept[@]} base backup(s) and the WAL from $needed on; deleted $removed archived file(s)"
