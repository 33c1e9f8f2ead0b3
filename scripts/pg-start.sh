#!/usr/bin/env bash
# Installs Debian's PostgreSQL when it is missing, starts the local cluster
# (unix socket and loopback only) and makes the current user a superuser
# role, so tests and `relic backup pg` work with libpq defaults.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing postgresql" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
  $SUDO pg_createcluster "$ver" main >/dev/null
fi
# True when the pid in a socket lock file is a live (not zombie) postgres.
lock_owner_alive() {
  local pid state
  pid=$(head -n 1 "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] && [ "$state" != Z ]
}
if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -qx online; then
  # A server killed with -9 (as at the end of a session) leaves socket lock
  # files naming a pid that may since belong to another process.
  for lock in /var/run/postgresql/.s.PGSQL.*.lock; do
    [ -e "$lock" ] || continue
    if ! lock_owner_alive "$lock"; then
      $SUDO rm -f "$lock" "${lock%.lock}"
    fi
  done
  $SUDO pg_ctlcluster "$ver" main start
fi
for _ in $(seq 1 50); do
  pg_isready -q && break
  sleep 0.2
done
pg_isready
me=$(id -un)
as_pg() {
  if [ "$me" = postgres ]; then "$@"
  elif [ "$(id -u)" = 0 ]; then su postgres -c "$(printf '%q ' "$@")"
  else sudo -u postgres "$@"; fi
}
if [ "$(as_pg psql -XtAc "SELECT 1 FROM pg_roles WHERE rolname = '$me'")" != 1 ]; then
  as_pg createuser --superuser "$me"
fi
