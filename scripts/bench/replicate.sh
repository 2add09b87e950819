#!/usr/bin/env bash
# Replication benchmark: publish a 100 MiB site of mixed file sizes on a "laptop", `touch` its
# key in the control folder, and time until the mirror reports it mirrored (the laptop's
# `cat MNT/<key>` says `state: mirrored vN`). In the same run, measure the baselines on the
# same bytes and print a table with the ratios:
#   - raw iroh on loopback (one stream; the file mix as messages; 64 KiB request/response),
#   - the in-process hypercore ceiling (publish's cores replicated disk to disk, no network),
#     on this temp dir's disk and, when /dev/shm exists, on tmpfs (where fsync costs nothing),
#   - the anchor: Node hyperdrive 13 on corestore 7 replicating the same folder disk to disk
#     over an encrypted TCP loopback socket (scripts/bench/node-replicate.js; needs `node` and
#     the modules of crates/hypercore-engine/tests/node; skipped, and said, without them).
# Everything runs on 127.0.0.1 with relays disabled; nothing leaves the machine.
#
# Usage: scripts/bench/replicate.sh
# Environment: BENCH_TIMEOUT (s, default 600), BENCH_SITE_BYTES (default 104857600),
#              BENCH_KEEP=1 (keep the temp dir), TMPDIR (where the temp dir goes),
#              BENCH_BIN (a dat-mirror binary for the daemons instead of the one built; the
#              in-process rows still use this tree's engine).
# Needs: cargo, curl, /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail
# Nothing may leave this machine: mDNS, the DHT and relays off (peers meet on 127.0.0.1).
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TIMEOUT=${BENCH_TIMEOUT:-600}
SITE_BYTES=${BENCH_SITE_BYTES:-104857600}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

. "$ROOT/scripts/bench/lib.sh"
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }'; }
# field NAME LINE: the value of NAME=... in a `RESULT name k=v ...` line.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }

command -v curl >/dev/null || die "curl is needed"
[ -e /dev/fuse ] || die "/dev/fuse is missing (the control folder is a FUSE mount)"

say "== build: cargo build --release --bin dat-mirror --examples (waits if cargo's lock is busy)"
(cd "$ROOT" && cargo build --release --bin dat-mirror --examples)
BIN=${BENCH_BIN:-$TARGET/release/dat-mirror}
EX=$TARGET/release/examples
for b in "$BIN" "$EX/bench_raw_iroh" "$EX/bench_inprocess"; do [ -x "$b" ] || die "$b was not built"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
SHM=""
MNT=$WORK/mnt
PIDS=()

LOGS=(pi.log laptop.log publish.err)
cleanup_extra() { if [ -n "$SHM" ]; then rm -rf "$SHM"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------------------------------
say "== site: $SITE_BYTES bytes, deterministic, in $WORK/site"
SITE=$WORK/site
"$EX/bench_inprocess" gen-site "$SITE" "$WORK/sizes.txt" "$SITE_BYTES"
NFILES=$(wc -l <"$WORK/sizes.txt")
sync

# ---------------------------------------------------------------------------------------
say "== end to end: mirror + laptop on 127.0.0.1, publish, touch, wait for 'state: mirrored'"
LAPTOP_ID=$("$BIN" --data "$WORK/laptop" id)
PI_ID=$("$BIN" --data "$WORK/pi" id)
"$BIN" --data "$WORK/pi" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 --allow "$LAPTOP_ID" \
    >"$WORK/pi.out" 2>"$WORK/pi.log" &
PI_PID=$!
PIDS+=("$PI_PID")
wait_for_line "$WORK/pi.out" '^listening on ' 30 "$PI_PID"
PEER=$(sed -n 's/^listening on \([^ ]*\) (peers).*/\1/p' "$WORK/pi.out")
HTTP=$(sed -n 's/.*http:\/\/\([^ ]*\) (HTTP).*/\1/p' "$WORK/pi.out")
case "$PEER" in 127.0.0.1:[1-9]*) ;; *) die "mirror listens on '$PEER', expected 127.0.0.1:PORT" ;; esac
case "$HTTP" in 127.0.0.1:[1-9]*) ;; *) die "mirror's HTTP is on '$HTTP', expected 127.0.0.1:PORT" ;; esac

mkdir -p "$MNT"
"$BIN" --data "$WORK/laptop" mount "$MNT" --mirror "$PI_ID@$PEER" --listen 127.0.0.1:0 \
    >"$WORK/laptop.out" 2>"$WORK/laptop.log" &
LAPTOP_PID=$!
PIDS+=("$LAPTOP_PID")
wait_for_line "$WORK/laptop.out" '^control folder mounted' 30 "$LAPTOP_PID"
mountpoint -q "$MNT" || die "$MNT is not mounted"
say "   mirror $PEER (HTTP $HTTP), laptop mounted at $MNT"

T=$(now)
LINK=$("$BIN" --data "$WORK/laptop" publish "$SITE" 2>"$WORK/publish.err")
PUBLISH_S=$(since "$T")
KEY=${LINK#hyper://}
[[ "$KEY" =~ ^[0-9a-f]{64}$ ]] || die "publish printed '$LINK', expected hyper://<64 hex>"
say "   published $LINK in $PUBLISH_S s ($(cat "$WORK/publish.err"))"
sync

CPU_PI0=$(cpu_ticks "$PI_PID")
CPU_LAPTOP0=$(cpu_ticks "$LAPTOP_PID")
T_TOUCH=$(now)
touch "$MNT/$KEY"
DEADLINE=$((SECONDS + TIMEOUT))
FIRST_BYTES="" MIRROR_DONE="" SYNCING_SEEN="" STATE=""
while :; do
    STATE=$(sed -n 's/^state: //p' "$MNT/$KEY" 2>/dev/null || true)
    if [[ "$STATE" == mirrored* ]]; then break; fi
    [[ -z "$SYNCING_SEEN" && "$STATE" == syncing* ]] && SYNCING_SEEN=$(since "$T_TOUCH")
    if [ -z "$MIRROR_DONE" ]; then
        JSON=$(curl -sf --max-time 2 "http://$HTTP/.well-known/dat-mirror" || true)
        BYTES=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' <<<"$JSON")
        [[ -z "$FIRST_BYTES" && "${BYTES:-0}" -gt 0 ]] && FIRST_BYTES=$(since "$T_TOUCH")
        [[ "$JSON" == *'"complete":true'* ]] && MIRROR_DONE=$(since "$T_TOUCH")
    fi
    kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited during the sync"
    kill -0 "$LAPTOP_PID" 2>/dev/null || die "the laptop daemon exited during the sync"
    [ "$SECONDS" -lt "$DEADLINE" ] || die "not mirrored after $TIMEOUT s (last state: '$STATE')"
    sleep 0.05
done
E2E_S=$(since "$T_TOUCH")
CPU_PI=$(awk -v a="$CPU_PI0" -v b="$(cpu_ticks "$PI_PID")" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / h }')
CPU_LAPTOP=$(awk -v a="$CPU_LAPTOP0" -v b="$(cpu_ticks "$LAPTOP_PID")" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / h }')
JSON=$(curl -sf --max-time 5 "http://$HTTP/.well-known/dat-mirror")
E2E_BYTES=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' <<<"$JSON")
E2E_BLOCKS=$(sed -n 's/.*"total_blocks":\([0-9]*\).*/\1/p' <<<"$JSON")
say "   $STATE after $E2E_S s (mirror: first bytes ${FIRST_BYTES:-?} s, all held ${MIRROR_DONE:-?} s; laptop saw syncing at ${SYNCING_SEEN:-never} s)"

for f in index.html posts/07/post-0700.html assets/img-17.jpg media/video-2.mp4; do
    curl -sf --max-time 60 "http://$HTTP/$KEY/$f" | cmp -s - "$SITE/$f" || die "$f over HTTP differs from the published file"
done
say "   4 files fetched over HTTP are byte-identical (small page, image, video, index)"
stop_daemons

# ---------------------------------------------------------------------------------------
say "== raw iroh on 127.0.0.1 (same bytes)"
RAW=$("$EX/bench_raw_iroh" "$SITE_BYTES" "$WORK/sizes.txt")
sync

say "== in-process hypercore ceiling: the same site's cores, replicated disk to disk, no network"
INPROC=$("$EX/bench_inprocess" replicate "$SITE" "$WORK/inproc")
rm -rf "$WORK/inproc"
sync
INPROC_SHM=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    SHM=$(mktemp -d /dev/shm/dat-mirror-bench.XXXXXX)
    say "== the same on tmpfs ($SHM: fsync is free there)"
    INPROC_SHM=$("$EX/bench_inprocess" replicate "$SITE" "$SHM")
    rm -rf "$SHM"
    SHM=""
fi

NODE_MODULES=$ROOT/crates/hypercore-engine/tests/node/node_modules
NODE_OUT=""
if command -v node >/dev/null && [ -d "$NODE_MODULES/hyperdrive" ]; then
    say "== anchor: Node hyperdrive 13 replicates the same folder over a TCP loopback socket"
    mkdir -p "$WORK/node"
    NODE_OUT=$(NODE_PATH=$NODE_MODULES node "$ROOT/scripts/bench/node-replicate.js" "$SITE" "$WORK/node")
    rm -rf "$WORK/node"
    sync
else
    say "== anchor skipped: no node, or no $NODE_MODULES/hyperdrive (npm ci there)"
fi

# ---------------------------------------------------------------------------------------
line_of() { grep "^RESULT $1 " <<<"$2" || die "no $1 result"; }
row() { # label bytes secs [blocks]
    awk -v l="$1" -v n="$2" -v s="$3" -v e="$E2E_S" -v b="${4:-}" 'BEGIN {
        bps = (b == "") ? "" : sprintf("%.0f", b / s)
        printf "%-48s %11d %9.3f %9.1f %9s %9.2fx\n", l, n, s, n / s / 1048576, bps, e / s }'
}
echo
echo "dat-mirror replication benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "site: $NFILES files, $SITE_BYTES bytes; mirror keys the site at $E2E_BLOCKS blocks (db + blobs)"
printf '%-48s %11s %9s %9s %9s %10s\n' "what" "bytes" "secs" "MiB/s" "blocks/s" "e2e/this"
row "end to end: touch -> laptop sees mirrored" "$E2E_BYTES" "$E2E_S" "$E2E_BLOCKS"
[ -n "$MIRROR_DONE" ] && row "  mirror holds it all (HTTP complete)" "$E2E_BYTES" "$MIRROR_DONE" "$E2E_BLOCKS"
row "publish (import via the laptop daemon)" "$SITE_BYTES" "$PUBLISH_S"
for r in raw_stream:"raw iroh: one stream" raw_messages:"raw iroh: the file mix as $NFILES messages" \
    raw_rr64k:"raw iroh: 64 KiB req/resp, 64 in flight"; do
    l=$(line_of "${r%%:*}" "$RAW")
    row "${r#*:}" "$(field bytes "$l")" "$(field secs "$l")"
done
l=$(line_of inproc_replicate "$INPROC")
row "in-process hypercore, disk to disk" "$(field bytes "$l")" "$(field secs "$l")" "$(field blocks "$l")"
if [ -n "$INPROC_SHM" ]; then
    l=$(line_of inproc_replicate "$INPROC_SHM")
    row "in-process hypercore, tmpfs to tmpfs" "$(field bytes "$l")" "$(field secs "$l")" "$(field blocks "$l")"
fi
l=$(line_of inproc_publish "$INPROC")
row "in-process publish (import, disk)" "$(field bytes "$l")" "$(field secs "$l")"
if [ -n "$NODE_OUT" ]; then
    l=$(line_of node_replicate "$NODE_OUT")
    row "anchor: Node hyperdrive 13, TCP loopback" "$(field bytes "$l")" "$(field secs "$l")" "$(field blocks "$l")"
    l=$(line_of node_publish "$NODE_OUT")
    row "anchor: Node hyperdrive 13 import (put/file)" "$(field bytes "$l")" "$(field secs "$l")"
fi
echo
echo "e2e timeline after touch: mirror's first bytes ${FIRST_BYTES:-?} s, mirror complete ${MIRROR_DONE:-?} s," \
    "laptop shows mirrored $E2E_S s; CPU during sync: mirror ${CPU_PI} s, laptop ${CPU_LAPTOP} s;" \
    "raw connect $(field secs "$(line_of raw_connect "$RAW")") s"
if [ -n "$NODE_OUT" ]; then
    NODE_S=$(field secs "$(line_of node_replicate "$NODE_OUT")")
    bench_row "replication, $((SITE_BYTES / 1048576)) MiB site, touch -> mirrored" "$E2E_S s" "Node hyperdrive 13 $NODE_S s" \
        "$(awk -v a="$E2E_S" -v b="$NODE_S" 'BEGIN { printf "%.2fx time", a / b }')" "<= 1x Node"
else
    bench_row "replication, $((SITE_BYTES / 1048576)) MiB site, touch -> mirrored" "$E2E_S s" "Node: skipped" "-" "<= 1x Node"
fi
