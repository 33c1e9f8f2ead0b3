#!/usr/bin/env bash
# End-to-end backup benchmark: relic vs rustic, restic and borg.
#
# Every tool backs up each day of a generated series from stdin (a pipe, like
# `pg_dump | tool backup`), then restores the last day to /dev/null. Measured:
# backup wall time per day, repository size after each day (du -sb), peak RSS
# (GNU time %M, max over all runs), restore time, and restore correctness
# (sha256 of the restored stream == sha256 of the input). See benches/README.md.
#
# Usage: scripts/bench-e2e.sh [--series dump|tree|image|pgbench|both|all] [--days N]
#          [--size-mb S] [--workdir DIR] [--tools relic,rustic,restic,borg]
#          [--relic PATH] [--seed K] [--update-frac F] [--pgbench-tx T]
#          [--pgbench-filler text|blank] [--keep-repos]
# The pgbench series (real pg_dump output of a pgbench database, T
# transactions between days) needs a local PostgreSQL: scripts/pg-start.sh.
# The image series (`docker save` of an application image rebuilt daily on
# an unchanged base, scripts/gen-image-series.sh) needs a Docker engine
# (DOCKER_HOST, or a private one started by scripts/docker-start.sh); relic
# reads it with `backup image --file -`, the way `docker save | relic` is
# documented, the peers as any stream.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERIES=dump
DAYS=7
SIZE_MB=100
WORKDIR=/tmp/relic-bench
TOOLS=relic,rustic,restic,borg
RELIC=${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}/release/relic
# Fall back to the in-tree target dir when the default has no binary.
[[ -x $RELIC || ! -x $SCRIPT_DIR/../target/release/relic ]] || RELIC=$SCRIPT_DIR/../target/release/relic
SEED=1
UPDATE_FRAC=0.02
PGBENCH_TX=10000
PGBENCH_FILLER=text
KEEP_REPOS=0

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
die() { echo "bench-e2e: ERROR: $*" >&2; exit 1; }
log() { echo "[bench $(date +%T)] $*" >&2; }

while (($#)); do
  case $1 in
    --series) SERIES=$2; shift 2 ;;
    --days) DAYS=$2; shift 2 ;;
    --size-mb) SIZE_MB=$2; shift 2 ;;
    --workdir) WORKDIR=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --relic) RELIC=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --update-frac) UPDATE_FRAC=$2; shift 2 ;;
    --pgbench-tx) PGBENCH_TX=$2; shift 2 ;;
    --pgbench-filler) PGBENCH_FILLER=$2; shift 2 ;;
    --keep-repos) KEEP_REPOS=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage 2 ;;
  esac
done
case $SERIES in dump|tree|image|pgbench) SERIES_LIST=("$SERIES") ;; both) SERIES_LIST=(dump tree) ;;
  all) SERIES_LIST=(dump tree image pgbench) ;;
  *) die "--series must be dump, tree, image, pgbench, both or all" ;; esac
[[ $DAYS =~ ^[0-9]+$ && $DAYS -ge 1 && $DAYS -le 99 ]] || die "--days must be 1..99"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required: apt-get install time"
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"

# One password for every tool that encrypts (restic and rustic always do).
PASSWORD=relic-bench
export RESTIC_PASSWORD=$PASSWORD RUSTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD RELIC_PASSWORD=$PASSWORD
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
BORG_ENCRYPTION=${BORG_ENCRYPTION:-repokey}   # AES-256-CTR + HMAC-SHA256, key in repo

mkdir -p "$WORKDIR"/{data,repos,cache,logs,results}
WORKDIR=$(cd "$WORKDIR" && pwd)

# ---------------------------------------------------------------------------
# Tool adapters. Each sets the array CMD for one operation; the caller runs and
# times it. Arguments: repo dir, stream name (file name inside the snapshot),
# snapshot label (dayNN). Backups read stdin, restores write stdout.

tool_available() {
  case $1 in
    relic) [[ -x $RELIC ]] && "$RELIC" --help >/dev/null 2>&1 ;;
    rustic|restic|borg) command -v "$1" >/dev/null 2>&1 ;;
    *) die "unknown tool: $1" ;;
  esac
}

tool_version() {
  case $1 in
    relic) "$RELIC" --version 2>/dev/null | head -1 || echo "relic (version unknown)" ;;
    rustic) rustic --version 2>&1 | head -1 ;;
    restic) restic version 2>&1 | head -1 ;;
    borg) borg --version 2>&1 | head -1 ;;
  esac
}

# Configuration of each tool as benchmarked (printed with the results).
tool_setup() {
  case $1 in
    relic) echo "defaults${RELIC_INIT_ARGS:+ + init $RELIC_INIT_ARGS}${RELIC_KEY_CACHE:+ + key cache (RELIC_KEY_CACHE=$RELIC_KEY_CACHE)}" ;;
    rustic) echo "defaults (restic repo format v2: AES-256-CTR+Poly1305, zstd level 3); --force (else a stdin backup silently reuses the parent snapshot)" ;;
    restic) echo "defaults (repo format v2: AES-256-CTR+Poly1305, compression auto (fast zstd))" ;;
    borg) echo "-e $BORG_ENCRYPTION, --compression zstd,3 (borg's default would be lz4)" ;;
  esac
}

cmd_init() { # tool repo cachedir
  case $1 in
    relic) CMD=("$RELIC" -q -r "$2" init ${RELIC_INIT_ARGS:-}) ;;
    rustic) CMD=(rustic -r "$2" --cache-dir "$3" --no-progress init) ;;
    restic) CMD=(restic -r "$2" --cache-dir "$3" init) ;;
    borg) CMD=(env BORG_BASE_DIR="$3" borg init -e "$BORG_ENCRYPTION" "$2") ;;
  esac
}

cmd_backup() { # tool repo cachedir name label
  case $1 in
    relic) if [[ $4 == image.tar ]]; then
             CMD=("$RELIC" -q -r "$2" backup image --file - --name "$4")
           else
             CMD=("$RELIC" -q -r "$2" backup --stdin --name "$4")
           fi ;;
    rustic) CMD=(rustic -r "$2" --cache-dir "$3" --no-progress backup --stdin-filename "$4" --force --host bench -) ;;
    restic) CMD=(restic -r "$2" --cache-dir "$3" backup -q --stdin --stdin-filename "$4" --host bench) ;;
    borg) CMD=(env BORG_BASE_DIR="$3" borg create --compression zstd,3 --stdin-name "$4" "$2::$5" -) ;;
  esac
}

cmd_restore() { # tool repo cachedir name label
  case $1 in
    relic) CMD=("$RELIC" -q -r "$2" restore latest --stdout) ;;
    rustic) CMD=(rustic -r "$2" --cache-dir "$3" --no-progress dump "latest:/$4") ;;
    restic) CMD=(restic -r "$2" --cache-dir "$3" dump -q latest "/$4") ;;
    borg) CMD=(env BORG_BASE_DIR="$3" borg extract --stdout "$2::$5") ;;
  esac
}

# ---------------------------------------------------------------------------
# Timing. run_timed IN OUT LOGFILE -- cmd...: runs cmd with stdin piped from IN
# (through cat, so the tool sees a pipe, never a seekable file) and stdout to
# OUT; sets T_WALL (s, from EPOCHREALTIME), T_RSS_KB (peak RSS, GNU time %M),
# T_CPU (user+sys s). Any failure aborts the benchmark.
run_timed() {
  local in=$1 out=$2 logf=$3 tf t0 t1 user sys
  shift 4
  tf=$(mktemp)
  echo "+ $*" >>"$logf"
  t0=$EPOCHREALTIME
  if ! cat "$in" | /usr/bin/time -o "$tf" -f '%M %U %S' "$@" >"$out" 2>>"$logf"; then
    cat "$tf" >>"$logf"
    rm -f "$tf"
    die "command failed: $* (log: $logf)"
  fi
  t1=$EPOCHREALTIME
  read -r T_RSS_KB user sys <"$tf"
  rm -f "$tf"
  T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  T_CPU=$(awk -v a="$user" -v b="$sys" 'BEGIN { printf "%.2f", a + b }')
}

repo_bytes() { du -sb "$1" | cut -f1; }

# ---------------------------------------------------------------------------
# Data: generated once per (series, size, days, seed[, update-frac]) and reused.

ensure_series() { # series -> sets DATA_DIR, EXT, STREAM_NAME
  local s=$1 key
  case $s in
    dump) EXT=sql; STREAM_NAME=db.sql; key="dump-${SIZE_MB}mb-${DAYS}d-seed${SEED}-u${UPDATE_FRAC}" ;;
    tree) EXT=tar; STREAM_NAME=tree.tar; key="tree-${SIZE_MB}mb-${DAYS}d-seed${SEED}" ;;
    image) EXT=tar; STREAM_NAME=image.tar; key="image-${SIZE_MB}mb-${DAYS}d-seed${SEED}" ;;
    pgbench) EXT=sql; STREAM_NAME=db.sql; key="pgbench-${SIZE_MB}mb-${DAYS}d-tx${PGBENCH_TX}-${PGBENCH_FILLER}" ;;
  esac
  DATA_DIR=$WORKDIR/data/$key
  if [[ ! -f $DATA_DIR/SHA256SUMS ]]; then
    log "generating $s series in $DATA_DIR"
    rm -rf "$DATA_DIR"
    if [[ $s == pgbench ]]; then
      # pgbench scale 1 dumps to about 9.6 MB.
      "$SCRIPT_DIR/gen-pgbench-series.sh" "$DATA_DIR" "$DAYS" "$(((SIZE_MB * 10 + 95) / 96))" "$PGBENCH_TX" "$PGBENCH_FILLER"
    elif [[ $s == image ]]; then
      "$SCRIPT_DIR/gen-image-series.sh" "$DATA_DIR" "$DAYS" "$SIZE_MB" "$SEED"
    elif [[ $s == dump ]]; then
      python3 "$SCRIPT_DIR/gen-dump-series.py" --out "$DATA_DIR" --days "$DAYS" \
        --size-mb "$SIZE_MB" --update-frac "$UPDATE_FRAC" --seed "$SEED"
    else
      python3 "$SCRIPT_DIR/gen-tree-series.py" --out "$DATA_DIR" --days "$DAYS" \
        --size-mb "$SIZE_MB" --seed "$SEED"
    fi
    (cd "$DATA_DIR" && sha256sum day*."$EXT" >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
  fi
}

day_file() { printf '%s/day%02d.%s' "$DATA_DIR" "$1" "$EXT"; }
prewarm() { cat "$DATA_DIR"/day*."$EXT" >/dev/null; }

# ---------------------------------------------------------------------------
# One tool over one series. Writes results/<series>-<tool>.csv (per day) and
# results/<series>-<tool>.sum (one line of totals).

bench_tool() { # series tool
  local s=$1 tool=$2 repo cache logf csv d f label bytes rb peak=0 want got
  repo=$WORKDIR/repos/$s-$tool
  cache=$WORKDIR/cache/$s-$tool
  logf=$WORKDIR/logs/$s-$tool.log
  csv=$WORKDIR/results/$s-$tool.csv
  rm -rf "$repo" "$cache"
  mkdir -p "$cache"
  : >"$logf"

  cmd_init "$tool" "$repo" "$cache"
  run_timed /dev/null /dev/null "$logf" -- "${CMD[@]}"

  prewarm
  echo "day,bytes,wall_s,cpu_s,rss_kb,repo_bytes" >"$csv"
  for ((d = 1; d <= DAYS; d++)); do
    f=$(day_file "$d")
    label=$(printf 'day%02d' "$d")
    bytes=$(stat -c %s "$f")
    cmd_backup "$tool" "$repo" "$cache" "$STREAM_NAME" "$label"
    run_timed "$f" /dev/null "$logf" -- "${CMD[@]}"
    rb=$(repo_bytes "$repo")
    peak=$((T_RSS_KB > peak ? T_RSS_KB : peak))
    echo "$d,$bytes,$T_WALL,$T_CPU,$T_RSS_KB,$rb" >>"$csv"
    log "$s/$tool $label: $((bytes / 1000000)) MB in ${T_WALL}s, repo $((rb / 1000000)) MB, RSS $((T_RSS_KB / 1024)) MiB"
  done

  # Restore the last day: timed run to /dev/null, then an untimed verification run.
  cmd_restore "$tool" "$repo" "$cache" "$STREAM_NAME" "$label"
  run_timed /dev/null /dev/null "$logf" -- "${CMD[@]}"
  peak=$((T_RSS_KB > peak ? T_RSS_KB : peak))
  local restore_s=$T_WALL
  want=$(grep " $(basename "$f")\$" "$DATA_DIR/SHA256SUMS" | cut -d' ' -f1)
  got=$("${CMD[@]}" 2>>"$logf" </dev/null | sha256sum | cut -d' ' -f1) ||
    die "verification restore failed: ${CMD[*]} (log: $logf)"
  [[ $got == "$want" ]] || die "$tool restored day $DAYS with sha256 $got, expected $want"
  log "$s/$tool restore: ${restore_s}s, sha256 OK"
  echo "$restore_s,$bytes,$peak,$rb" >"$WORKDIR/results/$s-$tool.sum"
  ((KEEP_REPOS)) || rm -rf "$repo" "$cache"
}

# ---------------------------------------------------------------------------
# Reporting (awk over the CSVs; MB = 10^6 bytes).

tool_row() { # series tool -> "first_mbs series_mbs restore_mbs repo_bytes rss_mb"
  awk -F, -v sumf="$WORKDIR/results/$1-$2.sum" '
    NR > 1 { if ($1 == 1) first = $2 / $3 / 1e6; tb += $2; tw += $3 }
    END {
      getline line < sumf; split(line, r, ",")
      printf "%.1f %.1f %.1f %d %.1f\n", first, tb / tw / 1e6, r[2] / r[1] / 1e6, r[4], r[3] * 1024 / 1e6
    }' "$WORKDIR/results/$1-$2.csv"
}

report_series() { # series tool...
  local s=$1 t; shift
  local -A row=()
  local total last
  total=$(cat "$DATA_DIR"/day*."$EXT" | wc -c)
  last=$(stat -c %s "$(day_file "$DAYS")")
  echo "### $s series: $DAYS days, day 1 ≈ $SIZE_MB MB, last day $((last / 1000000)) MB, total input $((total / 1000000)) MB"
  echo
  echo "| tool | first backup MB/s | series backup MB/s | restore MB/s | repo bytes | peak RSS MB |"
  echo "|---|---:|---:|---:|---:|---:|"
  for t in "${ALL_TOOLS[@]}"; do
    if [[ " ${RAN[*]} " == *" $t "* ]]; then
      row[$t]=$(tool_row "$s" "$t")
      read -r a b c d e <<<"${row[$t]}"
      echo "| $t | $a | $b | $c | $d | $e |"
    else
      echo "| $t | skipped (not installed) | | | | |"
    fi
  done
  echo
  if [[ -n ${row[relic]:-} ]] && ((${#row[@]} > 1)); then
    echo "relic ÷ peer (throughput: >1 = relic faster; repo size and RSS: <1 = relic smaller)"
    echo
    echo "| peer | first backup | series backup | restore | repo size | peak RSS |"
    echo "|---|---:|---:|---:|---:|---:|"
    for t in "${!row[@]}"; do
      [[ $t == relic ]] && continue
      echo "${row[relic]} ${row[$t]} $t"
    done | sort -k11 | awk '{ printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                               $11, $1/$6, $2/$7, $3/$8, $4/$9, $5/$10 }'
    echo
  fi
}

# ---------------------------------------------------------------------------

ALL_TOOLS=("${TOOL_LIST[@]}")
RAN=()
for t in "${TOOL_LIST[@]}"; do
  if tool_available "$t"; then
    RAN+=("$t")
  elif [[ $t == relic ]]; then
    die "relic binary not found or not working: $RELIC (build it, pass --relic PATH, or drop relic from --tools)"
  else
    log "$t not installed: skipped"
  fi
done
((${#RAN[@]})) || die "no tool to benchmark"

OUT=$WORKDIR/results.md
{
  echo "## relic end-to-end benchmark"
  echo
  echo "$(date -u +%FT%TZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
  echo "Inputs piped through stdin, page cache warm for every tool; MB = 10^6 bytes; peak RSS = max over all backup and restore runs."
  echo
  for t in "${RAN[@]}"; do echo "- $t: $(tool_version "$t"); $(tool_setup "$t")"; done
  echo
} >"$OUT.tmp"

for s in "${SERIES_LIST[@]}"; do
  ensure_series "$s"
  for t in "${RAN[@]}"; do
    log "=== $s series: $t"
    bench_tool "$s" "$t"
  done
  report_series "$s" >>"$OUT.tmp"
done
mv "$OUT.tmp" "$OUT"
cat "$OUT"
log "results: $OUT, per-day CSVs: $WORKDIR/results/, tool logs: $WORKDIR/logs/"
