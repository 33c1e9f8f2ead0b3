#!/usr/bin/env bash
# Time to get a database back, on one pgbench database with its indexes and
# foreign keys, the same run for each loader (medians of N):
#   - psql -v ON_ERROR_STOP=1 --single-transaction -f dump.sql into a new database
#   - pg_restore -j JOBS of a directory-format dump (pg_dump -Fd -Z0) made by hand
#   - relic restore SNAP --into-postgres dbname=NEW --create -j JOBS, and -j 1
# and relic's own read of the stream (restore --stdout > /dev/null), then
# each time as a ratio of psql's. Every load starts from the same server
# state: the previous database dropped, a CHECKPOINT, and the page cache
# written out (sync).
#   benches/pg-restore.sh [SCALE=100] [RUNS=3] [JOBS=2] [DAYS=0]
# DAYS > 0: the database is the last day of a daily series instead
# (scripts/gen-pgbench-series.sh DAYS days at SCALE, rows filled with
# text, 10,000 transactions a day), backed up by relic every day; the
# backups' wall time and the repository's growth are printed too (what a
# day costs).
# Needs a running local PostgreSQL reachable as the postgres superuser
# (scripts/pg-start.sh) and a release build (cargo build --release).
set -euo pipefail
scale=${1:-100}
runs=${2:-3}
jobs=${3:-2}
days=${4:-0}
here="$(cd "$(dirname "$0")/.." && pwd)"
relic="${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic"
[ -x "$relic" ] || { echo "build relic first: cargo build --release" >&2; exit 1; }
as_pg() { if [ "$(id -un)" = postgres ] || [ -n "${PGUSER:-}" ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi; }
work=$(mktemp -d /var/tmp/relic-pg-restore.XXXX)
chmod 777 "$work"
trap 'rm -rf "$work"; for d in $(as_pg psql -Atc "SELECT datname FROM pg_database WHERE datname LIKE '"'"'bench_restore_%'"'"'"); do as_pg dropdb --if-exists "$d"; done' EXIT
export RELIC_PASSWORD=bench
"$relic" -q -r "$work/repo" init --kdf-memory 8
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
if [ "$days" -gt 0 ]; then
  src=relic_pgbench_series
  echo "pgbench series: $days days at scale $scale..." >&2
  export RELIC="$relic" RELIC_REPO="$work/repo" TIMES="$work/backup-times"
  AFTER_DAY='s=$(date +%s.%N); "$RELIC" -q -r "$RELIC_REPO" backup pg "dbname=$DB" --name db; echo "$(echo "$(date +%s.%N) - $s" | bc) $(du -sb "$RELIC_REPO" | cut -f1)" >> "$TIMES"' \
    "$here/scripts/gen-pgbench-series.sh" "$work/series" "$days" "$scale" 10000 text >/dev/null
  rm -rf "$work/series"
  awk 'NR==1 {first=$2} {print "day " NR ": backup pg " $1 " s, repository " $2 " bytes" (NR > 1 ? ", +" $2 - prev : "")} {prev=$2}' "$TIMES" >&2
  echo "backup pg median wall: $(cut -d' ' -f1 "$TIMES" | median) s; growth over days 2-$days: $(awk 'NR==1 {f=$2} END {print $2 - f}' "$TIMES") bytes" >&2
else
  src=bench_restore_src
  as_pg dropdb --if-exists "$src" 2>/dev/null
  as_pg createdb "$src"
  echo "pgbench scale $scale (with foreign keys)..." >&2
  as_pg pgbench -q -i --foreign-keys -s "$scale" "$src" >/dev/null 2>&1
  "$relic" -q -r "$work/repo" backup pg "dbname=$src" --name db
fi
as_pg pg_dump -f "$work/dump.sql" "$src"
as_pg pg_dump -Fd -Z0 -f "$work/dump.dir" "$src"
echo "dump: $(stat -c %s "$work/dump.sql") bytes, $(as_pg psql -Atc 'SELECT count(*) FROM pgbench_accounts' "$src") rows in pgbench_accounts" >&2

declare -A t
for r in $(seq 1 "$runs"); do
  for m in psql pg_restore relic relic-j1 read; do
    db=bench_restore_${m/-/_}
    as_pg dropdb --if-exists "$db" 2>/dev/null
    as_pg psql -qc CHECKPOINT
    sync
    start=$(now)
    case $m in
      psql) as_pg createdb "$db" && as_pg psql -q -v ON_ERROR_STOP=1 --single-transaction -d "$db" -f "$work/dump.sql" >/dev/null ;;
      pg_restore) as_pg createdb "$db" && as_pg pg_restore -j "$jobs" -d "$db" "$work/dump.dir" ;;
      relic) "$relic" -q -r "$work/repo" restore db --into-postgres "dbname=$db" --create --no-safety-snapshot -j "$jobs" ;;
      relic-j1) "$relic" -q -r "$work/repo" restore db --into-postgres "dbname=$db" --create --no-safety-snapshot -j 1 ;;
      read) "$relic" -r "$work/repo" restore db --stdout > /dev/null ;;
    esac
    t[$m]+="$(echo "$(now) - $start" | bc) "
  done
done
base=$(echo ${t[psql]} | tr ' ' '\n' | median)
printf '%-12s %10s %8s   %s\n' loader seconds "÷ psql" runs
for m in psql pg_restore relic relic-j1 read; do
  s=$(echo ${t[$m]} | tr ' ' '\n' | median)
  printf '%-12s %10.2f %8.2f   %s\n' "$m" "$s" "$(echo "$s / $base" | bc -l)" "${t[$m]}"
done
