#!/usr/bin/env bash
# How long `relic report` takes on a repository of N snapshots (default
# 1000): daily dumps of a changing database, a snapshot an hour, and an
# immaculate baseline every 100. Times `report --html` and `report --json`
# (medians of RUNS), and the page's size.
#   benches/report.sh [N=1000] [RUNS=3]
# Needs a release build (cargo build --release).
set -euo pipefail
n=${1:-1000}
runs=${2:-3}
relic="${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic"
[ -x "$relic" ] || { echo "build relic first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /var/tmp/relic-report.XXXX)
trap 'rm -rf "$work"' EXIT
export RELIC_PASSWORD=bench TZ=UTC
"$relic" -q -r "$work/repo" init --kdf-memory 8
export RELIC_KEY_CACHE=1h
echo "writing $n snapshots..." >&2
start=$(date +%s)
for i in $(seq 1 "$n"); do
  t=$(date -u -d "@$((1767225600 + i * 3600))" +%Y-%m-%dT%H:%M:%SZ)
  tier=daily; name=app
  if [ $((i % 100)) = 0 ]; then tier=immaculate; name="base-$i"; fi
  # A dump-like stream: most lines the same every time, some new.
  { seq 1 20000; seq "$i" $((i + 200)); } | "$relic" -q -r "$work/repo" backup --stdin --name "$name" --tier "$tier" --time "$t"
done
echo "  in $(( $(date +%s) - start )) s" >&2
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for what in html json; do
  ts=""
  for r in $(seq 1 "$runs"); do
    s=$(date +%s.%N)
    if [ "$what" = html ]; then
      "$relic" -q -r "$work/repo" report --html "$work/report.html"
    else
      "$relic" -q -r "$work/repo" report --json > "$work/report.json"
    fi
    ts+="$(echo "$(date +%s.%N) - $s" | bc) "
  done
  printf 'report --%-4s %d snapshots: median %.3f s   (%s)\n' "$what" "$n" "$(echo $ts | tr ' ' '\n' | median)" "$ts"
done
echo "page: $(stat -c %s "$work/report.html") bytes; json: $(stat -c %s "$work/report.json") bytes"
