#!/usr/bin/env bash
# A series of daily `docker save` tarballs of an application image rebuilt
# every day on an unchanged base image, as a CI pipeline would build it:
#   scripts/gen-image-series.sh OUTDIR [DAYS=5] [SIZE_MB=200] [SEED=1]
# The base (about 45% of SIZE_MB) is the host's shared libraries, Python
# and /usr/share, imported with `docker import`; the application layer is
# a source tree from scripts/gen-tree-series.py (a few files edited, added
# and removed per day) copied in by `docker build`. Each day's OUTDIR/dayNN.tar
# is `docker save` of that day's image: the base layer byte-identical every
# day, the application layer a little different.
# Needs a Docker engine: DOCKER_HOST, or scripts/docker-start.sh starts
# a private one.
set -euo pipefail
out=${1:?usage: gen-image-series.sh OUTDIR [DAYS] [SIZE_MB] [SEED]}
days=${2:-5}
size=${3:-200}
seed=${4:-1}
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${DOCKER_HOST:-}" ]; then
  DOCKER_HOST=$("$here/docker-start.sh")
  export DOCKER_HOST
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
base_mb=$((size * 45 / 100))
app_mb=$((size - base_mb))

# The base: files of the host in sorted order until base_mb, fixed owner
# and mtime, so it is the same tar on every run on this machine.
python3 - "$work/base.tar" "$base_mb" <<'EOF'
import os, sys, tarfile
out, limit = sys.argv[1], int(sys.argv[2]) * 1_000_000
total = 0
def fixed(ti):
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 1_704_067_200
    return ti
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for top in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/python3", "/usr/share"):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                t.add(p, arcname=p.lstrip("/"), recursive=False, filter=fixed)
                total += os.path.getsize(p)
                if total >= limit:
                    sys.exit(0)
EOF
docker import "$work/base.tar" relic-bench-base:1 >/dev/null

python3 "$here/gen-tree-series.py" --out "$work/trees" --days "$days" --size-mb "$app_mb" --seed "$seed" >/dev/null
for d in $(seq 1 "$days"); do
  name=$(printf 'day%02d' "$d")
  ctx=$work/ctx
  rm -rf "$ctx"
  mkdir -p "$ctx/app"
  tar -xf "$work/trees/$name.tar" -C "$ctx/app"
  printf 'FROM relic-bench-base:1\nCOPY app /app\n' >"$ctx/Dockerfile"
  # The legacy builder (Debian's docker.io has no BuildKit) warns that it
  # is deprecated on every build: its output is shown only on failure.
  DOCKER_BUILDKIT=0 docker build -q -t "relic-bench-app:$name" "$ctx" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; exit 1; }
  docker save "relic-bench-app:$name" >"$out/$name.tar"
  docker rmi -f "relic-bench-app:$name" >/dev/null
  echo "$out/$name.tar $(stat -c %s "$out/$name.tar")"
done
rm -rf "$work/ctx"
docker rmi -f relic-bench-base:1 >/dev/null
