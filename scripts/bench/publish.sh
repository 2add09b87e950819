#!/usr/bin/env bash
# Publish benchmark (#12): the 100 MiB mixed site of replicate.sh (the same generator) made
# into a site by `dat-mirror publish DIR` (a new process on a fresh data folder: it opens the
# store, imports every file into the db and blobs cores, commits) vs Node's anchor,
# `localdrive.mirror(drive)` into a new hyperdrive 13 on corestore 7 (Agregore's stack;
# scripts/bench/node, pinned), on the same bytes in the same run. Goal: publish >= Node.
# Node's time is taken inside its process (the mirror call alone, from an open drive) and for
# its whole process; dat-mirror's is the whole process (start, open, import, durable commit).
# Nothing touches the network.
#
# Usage: scripts/bench/publish.sh
# Environment: BENCH_SITE_BYTES (default 104857600), BENCH_KEEP=1, TMPDIR.
# Needs: cargo, node + `npm ci --prefix scripts/bench/node`.
set -euo pipefail
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SITE_BYTES=${BENCH_SITE_BYTES:-104857600}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NODE_DIR=$ROOT/scripts/bench/node

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }'; }
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }

command -v node >/dev/null || die "node is needed for the anchor"
[ -d "$NODE_DIR/node_modules/localdrive" ] || die "run: npm ci --prefix $NODE_DIR"

say "== build: cargo build --release --bin dat-mirror --examples (waits if cargo's lock is busy)"
(cd "$ROOT" && cargo build --release --bin dat-mirror --examples)
BIN=$TARGET/release/dat-mirror
EX=$TARGET/release/examples
for b in "$BIN" "$EX/bench_inprocess"; do [ -x "$b" ] || die "$b was not built"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
cleanup() {
    local rc=$?
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say "== site: $SITE_BYTES bytes (replicate.sh's mix), in $WORK/site"
SITE=$WORK/site
"$EX/bench_inprocess" gen-site "$SITE" "$WORK/sizes.txt" "$SITE_BYTES" >/dev/null
NFILES=$(wc -l <"$WORK/sizes.txt")
sync

say "== dat-mirror publish (its own process, fresh data folder)"
T=$(now)
LINK=$("$BIN" --data "$WORK/laptop" publish "$SITE" 2>"$WORK/publish.err")
PUB_S=$(since "$T")
[[ "${LINK#hyper://}" =~ ^[0-9a-f]{64}$ ]] || die "publish printed '$LINK'"
say "   $LINK in $PUB_S s ($(cat "$WORK/publish.err"))"
sync

say "== anchor: Node localdrive.mirror(drive) into hyperdrive 13"
T=$(now)
NODE_OUT=$(cd "$NODE_DIR" && node hyper.js publish "$SITE" "$WORK/node")
NODE_PROC_S=$(since "$T")
say "   $NODE_OUT (process: $NODE_PROC_S s)"
NODE_S=$(field secs "$NODE_OUT")
[ "$(field files "$NODE_OUT")" = "$NFILES" ] || die "Node mirrored $(field files "$NODE_OUT") files, expected $NFILES"

row() { awk -v l="$1" -v n="$2" -v s="$3" -v p="$PUB_S" 'BEGIN {
    printf "%-56s %11d %9.3f %9.1f %12.2fx\n", l, n, s, n / s / 1048576, s / p }'; }
echo
echo "dat-mirror publish benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "site: $NFILES files, $SITE_BYTES bytes (replicate.sh's mix); one run each, same bytes"
printf '%-56s %11s %9s %9s %13s\n' "what" "bytes" "secs" "MiB/s" "this/publish"
row "dat-mirror publish DIR (whole process)" "$SITE_BYTES" "$PUB_S"
row "anchor: Node localdrive.mirror(drive), the call alone" "$(field bytes "$NODE_OUT")" "$NODE_S"
row "anchor: Node localdrive.mirror(drive), whole process" "$(field bytes "$NODE_OUT")" "$NODE_PROC_S"
awk -v n="$NODE_S" -v p="$PUB_S" 'BEGIN { printf "ratio Node (call alone)/dat-mirror publish: %.2fx (goal >= 1.0x)\n", n / p }'
