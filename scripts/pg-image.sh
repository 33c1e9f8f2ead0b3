#!/usr/bin/env bash
# Builds a PostgreSQL 15 image without a registry, from the host's Debian
# PostgreSQL binaries and the libraries they load (`docker import` of a
# rootfs), for the tests of databases inside containers. Prints the image
# reference; does nothing when the engine already has it.
#   DOCKER_HOST=... scripts/pg-image.sh [REFERENCE]
set -euo pipefail
ref="${1:-relic-test/postgres:15}"
if docker image inspect "$ref" >/dev/null 2>&1; then
    echo "$ref"
    exit 0
fi
bin=/usr/lib/postgresql/15/bin
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
mkdir -p "$root"/{bin,tmp,etc,var/run/postgresql,var/lib/postgresql/data,usr/lib/postgresql/15,usr/share/postgresql}
cp -a "$bin" "$root/usr/lib/postgresql/15/"
cp -a /usr/lib/postgresql/15/lib "$root/usr/lib/postgresql/15/"
cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
cp -a /usr/share/postgresql-common "$root/usr/share/" 2>/dev/null || true
cp /bin/sh /bin/cat /bin/sleep "$root/bin/"
# Every shared library the binaries load, at the same paths.
for f in "$bin"/* /usr/lib/postgresql/15/lib/*.so /bin/sh /bin/cat /bin/sleep; do
    ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}'
done | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh' >> "$root/etc/passwd"
printf 'root:x:0:\npostgres:x:999:\n' > "$root/etc/group"
cat > "$root/entrypoint" <<'SH'
#!/bin/sh
# First start: a cluster in the data volume (trust on the socket only).
set -e
PATH=/usr/lib/postgresql/15/bin:/bin
export PATH
if [ ! -s /var/lib/postgresql/data/PG_VERSION ]; then
    initdb -D /var/lib/postgresql/data -U "${POSTGRES_USER:-postgres}" --auth=trust -E UTF8 --locale=C >/dev/null
fi
exec postgres -D /var/lib/postgresql/data -c listen_addresses= -c unix_socket_directories=/var/run/postgresql
SH
chmod 755 "$root/entrypoint"
chmod 1777 "$root/tmp"
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$root.tar" --exclude=./var/run/postgresql --exclude=./var/lib/postgresql .
tar -C "$root" --numeric-owner --owner=999 --group=999 -rf "$root.tar" ./var/run/postgresql ./var/lib/postgresql
docker import \
    -c 'ENTRYPOINT ["/entrypoint"]' \
    -c 'USER 999:999' \
    -c 'ENV PATH=/usr/lib/postgresql/15/bin:/bin' \
    "$root.tar" "$ref" >/dev/null
rm -f "$root.tar"
echo "$ref"
