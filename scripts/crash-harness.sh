#!/usr/bin/env bash
# The nightly-sized crash harness: 100 SIGKILLs at random moments for each of
# backup, sync and prune, every one followed by check --read-data and a
# restore of every finished snapshot (tests/crash.rs, tests/prune.rs), and
# the concurrency model (tests/concurrency.rs) with thousands of randomized
# operations. CI runs the same tests with fewer runs. Prints the test
# summary lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}"
export RELIC_KILL_RUNS="${RELIC_KILL_RUNS:-100}"
echo "RELIC_KILL_RUNS=$RELIC_KILL_RUNS"
export RELIC_CONCURRENCY_OPS="${RELIC_CONCURRENCY_OPS:-3000}"
cargo test --release --locked --test crash --test prune --test concurrency -- --test-threads=1 --nocapture 2>&1 |
  grep -E '^test |test result|^harness:|^operations:|^RELIC_CONCURRENCY'
