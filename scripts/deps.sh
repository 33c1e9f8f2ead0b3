#!/usr/bin/env bash
# Installs what building and testing relic needs on a bare Debian 12 machine:
# a Rust toolchain is assumed; clang (RocksDB's bindgen), PostgreSQL's
# client tools, the Docker engine (docker.io), systemd-analyze and
# python3-croniter and chromium come from Debian.
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need+=(libclang-dev clang)
command -v cc >/dev/null || need+=(build-essential)
command -v c++ >/dev/null || need+=(g++)
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker >/dev/null || need+=(docker.io)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# relic schedule's tests: systemd-analyze verifies the units written, a
# cron expression parser (croniter) the cron.d fallback.
command -v systemd-analyze >/dev/null || need+=(systemd)
/usr/bin/python3 -c 'import croniter' 2>/dev/null || need+=(python3-croniter)
# relic report's test opens the page in headless Chromium.
command -v chromium >/dev/null || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing build and test dependencies from Debian (about a minute): ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# moto, a real S3 server from PyPI that implements Object Lock (s3s-fs does
# not), for the `sync --object-lock` test; boto3 comes with it.
if ! python3 -c 'import moto.server, boto3' 2>/dev/null; then
  pkg='moto[server]==5.2.1'
  python3 -m pip install -q "$pkg" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "$pkg"
fi
