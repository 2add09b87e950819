#!/usr/bin/env bash
# FUSE benchmark: `cat` of a 1 GiB mirrored file through the mirror's read-only site tree,
# cold (page cache dropped) and warm, against `cat` of the same bytes from a plain file on
# the same disk, cold and warm; prints MiB/s and the ratios. Two trees of the same mirror are
# mounted: one as `serve --mount` mounts it (files of 1 MiB and up are copied once their
# first open closes, and the kernel reads later opens from the copy: passthrough), one with
# copies off (`--mount-cache 0`: every read goes through the mirror). The first read of the
# first tree (through the mirror; it starts the copy) is timed too.
#
# One process (examples/bench_site_tree.rs) runs a mirror with the tree mounted and a laptop
# on 127.0.0.1 (relays off, nothing leaves the machine): the laptop publishes a folder with
# the big file, the mirror replicates it, and the tree shows it at TREE/<key>/big.bin. The
# plain file is the published source file itself.
#
# Cold means `sync; echo 3 > /proc/sys/vm/drop_caches` before the read (root only; without
# it the "cold" rows are marked as not cold). For the tree that drops both the FUSE file's
# pages and the blobs core's data file pages, so the read goes to the disk through the
# mirror. Warm reads follow a read of the same file. Each row is the median of BENCH_RUNS.
#
# Usage: scripts/bench/fuse.sh
# Environment: BENCH_BYTES (default 1073741824), BENCH_RUNS (default 6),
#              BENCH_TIMEOUT (s, for publish + mirror; default 1800), BENCH_KEEP=1 (keep the
#              temp dir), TMPDIR (where the temp dir goes; must be a real disk, not tmpfs,
#              for the cold rows to mean anything), BENCH_EXAMPLE (a bench_site_tree binary to
#              use instead of building one, e.g. an older build to compare),
#              BENCH_WARM_CATS (cats per warm sample, default 4).
# Needs: cargo, /dev/fuse (root, or fuse3's fusermount3).
set -euo pipefail
# Nothing may leave this machine: mDNS, the DHT and relays off (peers meet on 127.0.0.1).
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BYTES=${BENCH_BYTES:-1073741824}
RUNS=${BENCH_RUNS:-6}
TIMEOUT=${BENCH_TIMEOUT:-1800}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# One row for scripts/bench/all.sh's table when BENCH_ROWS names a file (tab-separated:
# path, ours, anchor, ratio, goal); nothing otherwise.
bench_row() { if [ -n "${BENCH_ROWS:-}" ]; then printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_ROWS"; fi; }

[ -e /dev/fuse ] || die "/dev/fuse is missing (the site tree is a FUSE mount)"

if [ -n "${BENCH_EXAMPLE:-}" ]; then
    EX=$BENCH_EXAMPLE # a given build (e.g. an older one, to compare)
else
    say "== build: cargo build --release --example bench_site_tree (waits if cargo's lock is busy)"
    (cd "$ROOT" && cargo build --release --example bench_site_tree)
    EX=$TARGET/release/examples/bench_site_tree
fi
[ -x "$EX" ] || die "$EX was not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-fuse-bench.XXXXXX")
PID=""

cleanup() {
    local rc=$? i
    set +e
    if [ -n "$PID" ]; then
        kill -TERM "$PID" 2>/dev/null
        for i in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    if mountpoint -q "$WORK/tree" 2>/dev/null; then
        fusermount3 -u "$WORK/tree" 2>/dev/null || umount "$WORK/tree" 2>/dev/null || umount -l "$WORK/tree"
    fi
    if [ "$rc" -ne 0 ] && [ -s "$WORK/log" ]; then
        say "--- last lines of the mirror's log"
        tail -n 20 "$WORK/log" >&2
    fi
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say "== mirror + laptop in one process: publish $BYTES bytes, mirror them, mount the tree"
"$EX" "$WORK" "$BYTES" >"$WORK/out" 2>"$WORK/log" &
PID=$!
DEADLINE=$((SECONDS + TIMEOUT))
until grep -q '^READY' "$WORK/out" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || die "bench_site_tree exited early"
    [ "$SECONDS" -lt "$DEADLINE" ] || die "not ready after $TIMEOUT s"
    sleep 0.2
done
TREE_FILE=$(sed -n 's/^FILE //p' "$WORK/out")
COPY_FILE=$(sed -n 's/^FILE_COPIES //p' "$WORK/out")
COPIES=$(sed -n 's/^COPIES //p' "$WORK/out")
PLAIN_FILE=$(sed -n 's/^PLAIN //p' "$WORK/out")
grep -E '^(wrote|published|mirrored)' "$WORK/log" | sed 's/^/   /' >&2 || true
[ -f "$TREE_FILE" ] || die "the tree does not show $TREE_FILE"
[ "$(stat -c %s "$TREE_FILE")" = "$BYTES" ] || die "the tree shows the wrong size"
cmp -s "$TREE_FILE" "$PLAIN_FILE" || die "the tree's bytes differ from the published file"
say "   the tree's file is byte-identical to the published one"

CAN_DROP=1
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    CAN_DROP=0
    say "   cannot write /proc/sys/vm/drop_caches (not root?): 'cold' rows are NOT cold"
fi

# secs FILE COLD: seconds for `cat FILE >/dev/null`, after dropping caches if COLD=1; warm,
# the mean of WARM_CATS cats back to back (one warm cat of 1 GiB is ~40 ms: too short alone
# to tell the tree from the plain file).
WARM_CATS=${BENCH_WARM_CATS:-4}
secs() {
    local n=1 i
    if [ "$2" = 1 ]; then
        if [ "$CAN_DROP" = 1 ]; then
            sync
            echo 3 >/proc/sys/vm/drop_caches
        fi
    else
        n=$WARM_CATS
    fi
    local t0=$EPOCHREALTIME
    for i in $(seq "$n"); do cat "$1" >/dev/null; done
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$n" 'BEGIN { printf "%.6f\n", (b - a) / n }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The tree `serve --mount` mounts by default copies files of 1 MiB and up once their first
# open closes, and hands the copy to the kernel (passthrough). Its first read goes through
# the mirror and starts the copy; wait for the copy, then measure as for the other tree.
FIRST=$(secs "$COPY_FILE" 1)
DEADLINE=$((SECONDS + TIMEOUT))
until find "$COPIES" -type f -size "${BYTES}c" ! -name '.*' 2>/dev/null | grep -q .; do
    [ "$SECONDS" -lt "$DEADLINE" ] || die "no copy in $COPIES after $TIMEOUT s"
    sleep 0.2
done
cmp -s "$COPY_FILE" "$PLAIN_FILE" || die "the passed-through file's bytes differ from the published file"
say "   copied for passthrough; the passed-through file is byte-identical to the published one"

# Two phases, each interleaved with its own plain-file anchor: reading the tree through
# the mirror fills the kernel's memory with 4 KiB FUSE pages, and a read right after it
# (of any file, here) sometimes ran up to 3x slower, so the passthrough rows never follow it.
say "== $RUNS runs each, interleaved: passthrough copy vs plain file, then through the mirror vs plain file"
for f in copy_cold copy_warm plain_cold plain_warm tree_cold tree_warm plain2_cold plain2_warm; do
    : >"$WORK/$f"
done
# phase FILE NAME PLAIN: RUNS runs of FILE cold and warm into $WORK/NAME_cold|warm and of
# the plain file into $WORK/PLAIN_cold|warm, in turns: FILE first in odd runs, the plain
# file first in even ones, so whatever favours the first (or the second) read after a cache
# drop falls on both alike.
phase() {
    local r
    for r in $(seq "$RUNS"); do
        if [ $((r % 2)) = 1 ]; then
            secs "$1" 1 >>"$WORK/$2_cold"
            secs "$1" 0 >>"$WORK/$2_warm"
        fi
        secs "$PLAIN_FILE" 1 >>"$WORK/$3_cold"
        secs "$PLAIN_FILE" 0 >>"$WORK/$3_warm"
        if [ $((r % 2)) = 0 ]; then
            secs "$1" 1 >>"$WORK/$2_cold"
            secs "$1" 0 >>"$WORK/$2_warm"
        fi
        kill -0 "$PID" 2>/dev/null || die "bench_site_tree died during run $r"
    done
}
phase "$COPY_FILE" copy plain
phase "$TREE_FILE" tree plain2

MIB=$(awk -v b="$BYTES" 'BEGIN { print b / 1048576 }')
rate() { awk -v m="$MIB" -v s="$1" 'BEGIN { printf "%.0f", m / s }'; }
TC=$(median <"$WORK/tree_cold") TW=$(median <"$WORK/tree_warm")
PC=$(median <"$WORK/plain_cold") PW=$(median <"$WORK/plain_warm")
CC=$(median <"$WORK/copy_cold") CW=$(median <"$WORK/copy_warm")
P2C=$(median <"$WORK/plain2_cold") P2W=$(median <"$WORK/plain2_warm")
COLD_LABEL=$([ "$CAN_DROP" = 1 ] && echo "cold" || echo "cold?")

echo
echo "dat-mirror FUSE benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "cat of one $BYTES-byte file, median of $RUNS runs; the tree reads the mirror's verified blobs"
printf '%-44s %9s %9s %12s\n' "what" "secs" "MiB/s" "tree/plain"
row() { printf '%-44s %9.3f %9s %11.2fx\n' "$1" "$2" "$(rate "$2")" "$(awk -v a="$3" -v b="$2" 'BEGIN { print a / b }')"; }
plain() { printf '%-44s %9.3f %9s %12s\n' "$1" "$2" "$(rate "$2")" ""; }
echo "-- phase 1: passthrough copy vs plain file"
row "site tree, passthrough copy, $COLD_LABEL" "$CC" "$PC"
plain "plain file, $COLD_LABEL" "$PC"
row "site tree, passthrough copy, warm" "$CW" "$PW"
plain "plain file, warm" "$PW"
row "site tree, first read, $COLD_LABEL (then copied)" "$FIRST" "$PC"
echo "-- phase 2: through the mirror vs plain file"
row "site tree, through the mirror, $COLD_LABEL" "$TC" "$P2C"
plain "plain file, $COLD_LABEL" "$P2C"
row "site tree, through the mirror, warm" "$TW" "$P2W"
plain "plain file, warm" "$P2W"
echo "(tree/plain = the tree's MiB/s as a fraction of the plain file's; 1.00x = as fast."
echo " 'passthrough copy' is what serve --mount does by default for files of 1 MiB and up"
echo " once their first open closes; 'through the mirror' is --mount-cache 0 and smaller files.)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
MIBS=$((BYTES / 1048576))
bench_row "FUSE site tree, $MIBS MiB cat, warm (passthrough copy)" "$(rate "$CW") MiB/s" "plain file $(rate "$PW") MiB/s" "$(ratio "$PW" "$CW")" ">= 0.8x"
bench_row "FUSE site tree, $MIBS MiB cat, $COLD_LABEL (passthrough copy)" "$(rate "$CC") MiB/s" "plain file $(rate "$PC") MiB/s" "$(ratio "$PC" "$CC")" ">= 1.0x"
bench_row "FUSE site tree, warm, through the mirror (--mount-cache 0)" "$(rate "$TW") MiB/s" "plain file $(rate "$P2W") MiB/s" "$(ratio "$P2W" "$TW")" "—"
bench_row "FUSE site tree, $COLD_LABEL, through the mirror (--mount-cache 0)" "$(rate "$TC") MiB/s" "plain file $(rate "$P2C") MiB/s" "$(ratio "$P2C" "$TC")" "—"
