#!/usr/bin/env bash
# Delta settings on a daily series: for every (chunk size, delta depth)
# pair, backs up each day*.sql or day*.tar of DIR into a fresh encrypted repository and
# prints one Markdown row: pack bytes, index bytes, deltas, backup time of
# the series, restore time of the last day (to /dev/null).
#   scripts/measure-delta.sh DIR [CHUNK_AVGS="32768"] [DEPTHS="0 1 2 4 6"]
# DIR: e.g. the pgbench series of scripts/bench-e2e.sh --series pgbench.
set -euo pipefail
dir=${1:?usage: measure-delta.sh DIR [CHUNK_AVGS] [DEPTHS]}
avgs=${2:-32768}
depths=${3:-0 1 2 4 6}
relic=${RELIC:-${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RELIC_PASSWORD=measure
now() { date +%s.%N; }
shopt -s nullglob
days=("$dir"/day*.sql "$dir"/day*.tar)
input=$(cat "${days[@]}" | wc -c)
echo "| chunk avg | max depth | pack MB | index MB | delta chunks | backup MB/s | restore MB/s |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for avg in $avgs; do
  for depth in $depths; do
    repo=$work/r-$avg-$depth
    "$relic" -r "$repo" init --kdf-memory 8 --chunk-avg "$avg" --delta-depth "$depth" >/dev/null
    t0=$(now)
    for f in "${days[@]}"; do
      "$relic" -r "$repo" -q backup --stdin --name db <"$f" >/dev/null
    done
    t1=$(now)
    last=${days[-1]}
    r0=$(now)
    "$relic" -r "$repo" -q restore db --stdout >/dev/null
    r1=$(now)
    packs=$(du -sb "$repo/packs" | cut -f1)
    index=$(du -sb "$repo/index" | cut -f1)
    deltas=$("$relic" -r "$repo" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["delta_chunks"])')
    awk -v a="$avg" -v d="$depth" -v p="$packs" -v i="$index" -v n="$deltas" -v inp="$input" \
      -v t0="$t0" -v t1="$t1" -v l="$(stat -c %s "$last")" -v r0="$r0" -v r1="$r1" \
      'BEGIN { printf "| %d KiB | %d | %.1f | %.1f | %d | %.0f | %.0f |\n", a / 1024, d, p / 1e6, i / 1e6, n, inp / (t1 - t0) / 1e6, l / (r1 - r0) / 1e6 }'
    rm -rf "$repo"
  done
done
