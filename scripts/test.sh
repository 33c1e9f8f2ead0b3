#!/usr/bin/env bash
# The whole test suite, from a bare Debian 12 machine with Rust: installs and
# starts what the tests need (PostgreSQL, a private Docker engine, s3s-fs and
# moto), then runs formatting, lints, unit and integration tests against the
# real binary and the real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}"
scripts/deps.sh
scripts/pg-start.sh
# A real S3-compatible server for the sync tests (the newest s3s-fs that
# builds with this rustc); built once into the shared target directory.
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked
DOCKER_HOST="$(scripts/docker-start.sh)"
export DOCKER_HOST
cargo fmt --check
cargo clippy --release --all-targets --locked -- -D warnings
cargo test --release --locked "$@"
