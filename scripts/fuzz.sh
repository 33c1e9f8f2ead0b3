#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS (default 300) each and
# prints libFuzzer's final coverage and execution counts. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`); RUSTC_BOOTSTRAP lets the stable
# toolchain take the sanitizer flags. The first build compiles RocksDB with
# the fuzzing flags (about 20 minutes here), into fuzz/target.
# A crash leaves its input in fuzz/artifacts/<target>/: turn it into a
# regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-300}"
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR
cargo fuzz build -O --debug-assertions
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t"
  # Hand-made seeds (valid docker save tars, classic and OCI) start the
  # fuzzer past the header checksum.
  if [ -d "seeds/$t" ]; then cp -n seeds/"$t"/* "corpus/$t"/; fi
  echo "== $t (${seconds}s)"
  cargo fuzz run -O --debug-assertions "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 |
    grep -E '^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss|cov:|==ERROR|panicked' | tail -n 4
done
