#!/usr/bin/env bash
# What relic adds to the tools it wraps (issues 4 and 5): wall time of
#   pg_dump DB > /dev/null              against  relic backup pg DB
#   docker save IMAGE > /dev/null       against  relic backup image IMAGE
# each relic backup once into an empty repository (first) and once more
# (daily: everything deduplicates), and, to show what the machine does to
# the wrapped tool when the other core is busy, the tool alone beside a
# `nice -n 19` CPU burner. Runs alternate; medians of RUNS runs are printed.
#
#   scripts/measure-overhead.sh [--db DB] [--image REF] [--runs N]
#
# Needs a running PostgreSQL with DB (e.g. `pgbench -i -s 100 DB`, a 0.98 GB
# dump) and DOCKER_HOST with IMAGE. Run on a quiet machine.
set -euo pipefail
db="" image="" runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --db) db="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
relic="${RELIC:-${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic}"
work="$(mktemp -d /tmp/relic-overhead.XXXXXX)"
trap 'rm -rf "$work"; kill $(jobs -p) 2>/dev/null || true' EXIT
export RELIC_PASSWORD=overhead

secs() { # command... -> wall seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
burned() { # command... with a nice 19 CPU burner beside it
  nice -n 19 sh -c 'while :; do :; done' &
  local b=$!
  secs "$@"
  kill "$b"
  wait "$b" 2>/dev/null || true
}
first() { # fresh repository each time
  rm -rf "$work/first"
  "$relic" -q -r "$work/first" init >/dev/null
  secs "$@" -r "$work/first"
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

measure() { # label tool-command relic-args...
  local label="$1" tool="$2"
  shift 2
  rm -rf "$work/daily"
  "$relic" -q -r "$work/daily" init >/dev/null
  "$relic" -q -r "$work/daily" "$@" >/dev/null
  local a="" f="" d="" b=""
  for _ in $(seq "$runs"); do
    a+="$(secs sh -c "$tool > /dev/null")"$'\n'
    f+="$(first "$relic" -q "$@")"$'\n'
    d+="$(secs "$relic" -q -r "$work/daily" "$@")"$'\n'
    b+="$(burned sh -c "$tool > /dev/null")"$'\n'
  done
  local ma mf md mb
  ma=$(printf %s "$a" | median)
  mf=$(printf %s "$f" | median)
  md=$(printf %s "$d" | median)
  mb=$(printf %s "$b" | median)
  printf '| %s | %s | %s (%+.0f%%) | %s (%+.0f%%) | %s (%+.0f%%) |\n' "$label" "$ma" \
    "$mf" "$(echo "($mf / $ma - 1) * 100" | bc -l)" \
    "$md" "$(echo "($md / $ma - 1) * 100" | bc -l)" \
    "$mb" "$(echo "($mb / $ma - 1) * 100" | bc -l)"
}

echo "| job | tool alone s | relic, first backup s | relic, daily backup s | tool beside a nice-19 burner s |"
echo "|---|---:|---:|---:|---:|"
if [ -n "$db" ]; then
  measure "pg_dump $db" "pg_dump $db" backup pg --name db "dbname=$db"
fi
if [ -n "$image" ]; then
  measure "docker save $image" "docker save $image" backup image --name img "$image"
fi
