#!/usr/bin/env bash
# Backs up a series of daily dumps with several average chunk sizes and
# prints, per size: repository bytes after the series, mean bytes added per
# later day, backup seconds for the series, restore seconds of the last day.
#   scripts/measure-chunk-size.sh DIR_WITH_dayNN.sql [SIZES_KIB...]
set -euo pipefail
dir=${1:?usage: measure-chunk-size.sh SERIES_DIR [SIZES_KIB...]}
shift
[ $# -gt 0 ] && sizes=("$@") || sizes=(16 32 64 128 256 1024)
relic=${RELIC:-${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=("$dir"/day*.sql)
cat "${days[@]}" >/dev/null
printf '| avg chunk | unique chunks per day | repo after %d days | mean added per later day | backup s (series) | restore s (last day) |\n|---|---|---|---|---|---|\n' "${#days[@]}"
for kib in "${sizes[@]}"; do
  repo=$work/r$kib
  "$relic" -q -r "$repo" init --chunk-avg $((kib * 1024)) >/dev/null
  start=$(date +%s.%N)
  first=0
  for f in "${days[@]}"; do
    "$relic" -q -r "$repo" backup --stdin --name db < "$f" >/dev/null
    [ "$first" = 0 ] && first=$(du -sb --exclude=index "$repo" | cut -f1)
  done
  end=$(date +%s.%N)
  total=$(du -sb --exclude=index "$repo" | cut -f1)
  chunks=$("$relic" -r "$repo" stats --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["data_chunks"])')
  rs=$(date +%s.%N)
  "$relic" -q -r "$repo" restore latest --stdout >/dev/null
  re=$(date +%s.%N)
  python3 - "$kib" "$chunks" "$total" "$first" "${#days[@]}" "$start" "$end" "$rs" "$re" <<'PY'
import sys
kib, chunks, total, first, n, s, e, rs, re = sys.argv[1:]
total, first, n = int(total), int(first), int(n)
inc = (total - first) / max(n - 1, 1)
print(f"| {kib} KiB | {int(chunks)//n} | {total/1e6:.1f} MB | {inc/1e6:.2f} MB | {float(e)-float(s):.2f} | {float(re)-float(rs):.2f} |")
PY
  rm -rf "$repo"
done
