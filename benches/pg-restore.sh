#!/usr/bin/env bash
# Time to get a database back, on one pgbench database with its indexes and
# foreign keys, the same run for each loader (medians of N):
#   - psql -v ON_ERROR_STOP=1 --single-transaction -f dump.sql into a new database
#   - pg_restore -j JOBS of a directory-format dump (pg_dump -Fd -Z0) made by hand
#   - relic restore SNAP --into-postgres dbname=NEW --create -j JOBS, and -j 1
# and relic's own read of the stream (restore --stdout > /dev/null), then
# each time as a ratio of psql's.
#   benches/pg-restore.sh [SCALE=100] [RUNS=3] [JOBS=2]
# Needs a running local PostgreSQL reachable as the postgres superuser
# (scripts/pg-start.sh) and a release build (cargo build --release).
set -euo pipefail
scale=${1:-100}
runs=${2:-3}
jobs=${3:-2}
here="$(cd "$(dirname "$0")/.." && pwd)"
relic="${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic"
[ -x "$relic" ] || { echo "build relic first: cargo build --release" >&2; exit 1; }
as_pg() { if [ "$(id -un)" = postgres ] || [ -n "${PGUSER:-}" ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi; }
work=$(mktemp -d /var/tmp/relic-pg-restore.XXXX)
chmod 777 "$work"
trap 'rm -rf "$work"; for d in $(as_pg psql -Atc "SELECT datname FROM pg_database WHERE datname LIKE '"'"'bench_restore_%'"'"'"); do as_pg dropdb --if-exists "$d"; done' EXIT
src=bench_restore_src
as_pg dropdb --if-exists "$src" 2>/dev/null
as_pg createdb "$src"
echo "pgbench scale $scale (with foreign keys)..." >&2
as_pg pgbench -q -i --foreign-keys -s "$scale" "$src" >/dev/null 2>&1
as_pg pg_dump -f "$work/dump.sql" "$src"
as_pg pg_dump -Fd -Z0 -f "$work/dump.dir" "$src"
export RELIC_PASSWORD=bench
"$relic" -q -r "$work/repo" init --kdf-memory 8
"$relic" -q -r "$work/repo" backup pg "dbname=$src" --name db
echo "dump: $(stat -c %s "$work/dump.sql") bytes" >&2

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A t
for r in $(seq 1 "$runs"); do
  for m in psql pg_restore relic relic-j1 read; do
    db=bench_restore_${m/-/_}
    as_pg dropdb --if-exists "$db" 2>/dev/null
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
printf '%-12s %10s %8s\n' loader seconds "÷ psql"
for m in psql pg_restore relic relic-j1 read; do
  s=$(echo ${t[$m]} | tr ' ' '\n' | median)
  printf '%-12s %10.2f %8.2f\n' "$m" "$s" "$(echo "$s / $base" | bc -l)"
done
