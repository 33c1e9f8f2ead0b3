#!/usr/bin/env bash
# What relic adds to the tools it wraps (issues 4 and 5): wall time of
#   pg_dump DB > /dev/null              against  relic backup pg DB
#   docker save IMAGE > /dev/null       against  relic backup image IMAGE
# each relic backup once into an empty repository (first) and once more
# (daily: everything deduplicates), and, to show what the machine does to
# the wrapped tool when the other core is busy, the tool alone beside a
# `nice -n 19` CPU burner. Runs alternate; medians of RUNS runs are printed.
#
#   scripts/measure-overhead.sh [--db DB [--container NAME]] [--image REF] [--runs N]
#
# With --container, DB is a database inside that running container: the tool
# is `docker exec NAME pg_dump DB`, relic runs `backup pg --container NAME`.
# The last column is relic's own CPU (user + system) per GB of the stream on
# a daily backup.
#
# Needs a running PostgreSQL with DB (e.g. `pgbench -i -s 100 DB`, a 0.98 GB
# dump) and DOCKER_HOST with IMAGE. Run on a quiet machine.
set -euo pipefail
db="" image="" container="" runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --db) db="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --container) container="$2"; shift 2 ;;
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
cpu() { # command... -> user + system CPU seconds
  /usr/bin/time -f "%U %S" -o "$work/cpu" "$@" >/dev/null 2>&1
  awk '{print $1 + $2}' "$work/cpu"
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

measure() { # label tool-command relic-args...
  local label="$1" tool="$2"
  shift 2
  rm -rf "$work/daily"
  "$relic" -q -r "$work/daily" init >/dev/null
  "$relic" -q -r "$work/daily" "$@" >/dev/null
  local a="" f="" d="" b="" c=""
  local gb
  gb=$(sh -c "$tool" | wc -c | awk '{print $1 / 1e9}')
  for _ in $(seq "$runs"); do
    a+="$(secs sh -c "$tool > /dev/null")"$'\n'
    f+="$(first "$relic" -q "$@")"$'\n'
    d+="$(secs "$relic" -q -r "$work/daily" "$@")"$'\n'
    b+="$(burned sh -c "$tool > /dev/null")"$'\n'
    c+="$(cpu "$relic" -q -r "$work/daily" "$@")"$'\n'
  done
  local ma mf md mb mc
  mc=$(printf %s "$c" | median)
  ma=$(printf %s "$a" | median)
  mf=$(printf %s "$f" | median)
  md=$(printf %s "$d" | median)
  mb=$(printf %s "$b" | median)
  printf '| %s | %s | %s (%+.0f%%) | %s (%+.0f%%) | %s (%+.0f%%) | %.2f |\n' "$label" "$ma" \
    "$mf" "$(echo "($mf / $ma - 1) * 100" | bc -l)" \
    "$md" "$(echo "($md / $ma - 1) * 100" | bc -l)" \
    "$mb" "$(echo "($mb / $ma - 1) * 100" | bc -l)" \
    "$(echo "$mc / $gb" | bc -l)"
}

echo "| job | tool alone s | relic, first backup s | relic, daily backup s | tool beside a nice-19 burner s | relic daily CPU-s/GB |"
echo "|---|---:|---:|---:|---:|---:|"
if [ -n "$db" ] && [ -n "$container" ]; then
  measure "docker exec $container pg_dump $db" "docker exec $container pg_dump $db" \
    backup pg --container "$container" --name db "dbname=$db"
elif [ -n "$db" ]; then
  measure "pg_dump $db" "pg_dump $db" backup pg --name db "dbname=$db"
fi
if [ -n "$image" ]; then
  measure "docker save $image" "docker save $image" backup image --name img "$image"
fi
