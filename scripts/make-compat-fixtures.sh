#!/usr/bin/env bash
# Regenerates the compatibility fixtures tests/compat.rs opens:
#
#   tests/fixtures/compat/v1  format version 1, written by the relic of
#                             commit b781e86^ (b781e86 introduced version 2)
#   tests/fixtures/compat/v2  format version 2, written by the relic of
#                             commit 3c76960 (the last that wrote version 2),
#                             holding at least one (tag 2) delta blob
#   tests/fixtures/compat/v3  format version 3, written by the relic of this
#                             work tree, holding at least one (tag 3) delta
#
# Each gets the same snapshots of the content tests/compat.rs generates
# (its ignored test write_fixture_source writes it to
# /tmp/relic-compat-fixture, a fixed path because snapshots store absolute
# paths): `tree` (generation 1, label gen=1), `db` (a stream from stdin,
# tier named), `tree` (generation 2, label gen=2). Passphrase:
# relic-compat-fixture. Only repository objects are kept: the index, locks
# and tmp are removed (relic rebuilds the index from the packs on open).
#
# Usage: scripts/make-compat-fixtures.sh [v1|v2|v3]...   (default: v3)
# RELIC_V1_BIN=<path> / RELIC_V2_BIN=<path>: use this relic, built from
# the commit above, instead of building it.
# Regenerating v1 or v2 is only needed if the fixture is lost: its whole
# point is that it was written by the old code. Commit the result with the
# relic commit that wrote the newest one named in the message.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relic-target}"
V1_COMMIT='b781e86^'
V2_COMMIT='3c76960'
SOURCE=/tmp/relic-compat-fixture # tests/compat.rs: SOURCE
export RELIC_PASSWORD=relic-compat-fixture
unset RELIC_REPO RELIC_PASSWORD_FILE RELIC_PASSWORD_COMMAND

which=("$@")
[ ${#which[@]} -gt 0 ] || which=(v3)

work=$(mktemp -d)
cleanup() {
	git -C "$root" worktree remove --force "$work/v1-src" 2>/dev/null || true
	git -C "$root" worktree remove --force "$work/v2-src" 2>/dev/null || true
	rm -rf "$work" "$SOURCE"
}
trap cleanup EXIT

# The relic that writes each version, copied out of the shared target
# directory before the next build replaces it (nothing else may build into
# that directory meanwhile: target/release/relic is whichever was built
# last; make_fixture checks the version each one writes).
for v in "${which[@]}"; do
	case $v in
	v1 | v2)
		bin_var="RELIC_${v^^}_BIN"
		commit_var="${v^^}_COMMIT"
		if [ -n "${!bin_var:-}" ]; then
			cp "${!bin_var}" "$work/relic-$v"
			continue
		fi
		git worktree add --detach "$work/$v-src" "${!commit_var}"
		(cd "$work/$v-src" && { cargo build --release --locked || cargo build --release; })
		cp "$CARGO_TARGET_DIR/release/relic" "$work/relic-$v"
		git worktree remove --force "$work/$v-src"
		;;
	v3) ;;
	*)
		echo "usage: $0 [v1|v2|v3]..." >&2
		exit 2
		;;
	esac
done
# This tree's relic, and the test binary that writes the content.
cargo test --release --locked --test compat --no-run
cp "$CARGO_TARGET_DIR/release/relic" "$work/relic-v3"

source_gen() {
	RELIC_COMPAT_GEN=$1 cargo test --release --locked --test compat -q -- \
		--ignored --exact write_fixture_source >/dev/null
}

make_fixture() {
	local v=$1 bin="$work/relic-$1" repo="$work/$1"
	local version=${v#v}
	"$bin" -q -r "$repo" init --kdf-memory 8
	grep -q "\"version\": $version," "$repo/config" || {
		echo "$bin did not write format version $version:" >&2
		cat "$repo/config" >&2
		exit 1
	}
	source_gen 1
	"$bin" -q -r "$repo" backup --name tree --label gen=1 "$SOURCE/tree"
	"$bin" -q -r "$repo" backup --name db --tier named --stdin --stdin-name dump.sql <"$SOURCE/dump.sql"
	source_gen 2
	"$bin" -q -r "$repo" backup --name tree --label gen=2 "$SOURCE/tree"
	"$bin" -q -r "$repo" check --read-data
	"$bin" -q -r "$repo" stats
	if [ "$v" != v1 ]; then
		# Generation 2 changed a line of big.log: its chunk must be a delta.
		"$bin" -q -r "$repo" stats --json | grep -Eq '"delta_chunks": [1-9]' || {
			echo "the version $version fixture holds no delta blob" >&2
			exit 1
		}
	fi
	# Derived state and empty directories (git keeps none) go.
	rm -rf "$repo/index" "$repo/locks" "$repo/tmp"
	find "$repo/packs" -mindepth 1 -type d -empty -delete
	rm -rf "$root/tests/fixtures/compat/$v"
	mkdir -p "$root/tests/fixtures/compat"
	cp -r "$repo" "$root/tests/fixtures/compat/$v"
	echo "tests/fixtures/compat/$v: $(du -sh "$root/tests/fixtures/compat/$v" | cut -f1)"
}

for v in "${which[@]}"; do
	make_fixture "$v"
done
