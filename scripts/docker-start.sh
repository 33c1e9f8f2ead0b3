#!/usr/bin/env bash
# Starts a private Docker engine for the tests: Debian's dockerd with the vfs
# storage driver, no iptables, no bridge, its own data root, exec root and
# socket, so it never touches a system engine. Idempotent: an engine already
# answering on the socket is left alone. Prints the DOCKER_HOST to use.
set -euo pipefail
dir="${RELIC_DOCKER_DIR:-/tmp/relic-docker}"
sock="$dir/docker.sock"
export DOCKER_HOST="unix://$sock"
if docker version >/dev/null 2>&1; then
  echo "$DOCKER_HOST"
  exit 0
fi
command -v dockerd >/dev/null || { echo "dockerd is missing: run scripts/deps.sh" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "the test engine needs root (dockerd)" >&2; exit 1; }
mkdir -p "$dir/data" "$dir/exec"
rm -f "$sock" "$dir/exec/docker.pid"
nohup dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
  --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/exec/docker.pid" \
  -H "$DOCKER_HOST" >"$dir/dockerd.log" 2>&1 &
for _ in $(seq 1 120); do
  if docker version >/dev/null 2>&1; then
    echo "$DOCKER_HOST"
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not start; its log:" >&2
tail -n 30 "$dir/dockerd.log" >&2
exit 1
