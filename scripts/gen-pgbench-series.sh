#!/usr/bin/env bash
# A series of daily plain pg_dump files of a pgbench database with scattered
# updates between days (pg_dump writes rows in physical order, so updated
# rows move): the hardest realistic case for exact-chunk dedup.
#   scripts/gen-pgbench-series.sh OUTDIR [DAYS=7] [SCALE=14] [TX_PER_DAY=10000] [FILLER=text]
# FILLER=text fills pgbench_accounts.filler with hex text (two MD5s per row)
# so rows compress about as well as real ones (about 4x with zstd); FILLER=blank
# keeps pgbench's 84 blanks per row, which compress about 75x and leave
# mostly fixed per-chunk costs to measure.
# AFTER_DAY, when set, is a shell command run after each day's dump, with
# DB (the database) and DAY (1, 2, …) in its environment: a backup of the
# live database, say.
# Needs a running local PostgreSQL reachable as the postgres superuser
# (scripts/pg-start.sh, or PG* variables).
set -euo pipefail
out=${1:?usage: gen-pgbench-series.sh OUTDIR [DAYS] [SCALE] [TX_PER_DAY]}
days=${2:-7}
scale=${3:-14}
tx=${4:-10000}
filler=${5:-text}
db=relic_pgbench_series
as_pg() { if [ "$(id -un)" = postgres ] || [ -n "${PGUSER:-}" ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi; }
mkdir -p "$out"
as_pg dropdb --if-exists "$db"
as_pg createdb "$db"
as_pg pgbench -q -i -s "$scale" "$db" >/dev/null 2>&1
if [ "$filler" = text ]; then
  as_pg psql -q -v ON_ERROR_STOP=1 -d "$db" -c \
    "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid::bigint * 7919)::text)" \
    -c "VACUUM FULL pgbench_accounts" >/dev/null
fi
for d in $(seq 1 "$days"); do
  if [ "$d" -gt 1 ]; then
    as_pg pgbench -n -c 2 -j 2 -t "$((tx / 2))" "$db" >/dev/null 2>&1
  fi
  f=$(printf '%s/day%02d.sql' "$out" "$d")
  as_pg pg_dump "$db" > "$f"
  echo "$f $(stat -c %s "$f")"
  if [ -n "${AFTER_DAY:-}" ]; then DB=$db DAY=$d bash -c "$AFTER_DAY"; fi
done
