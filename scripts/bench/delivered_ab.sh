#!/usr/bin/env bash
# A/B of the touch -> `state: delivered` latency: two dat-mirror builds (or one build under
# two environments), each as its own mirror + laptop pair on 127.0.0.1, measured in the
# same minutes with samples alternating between them (A touch, B touch, A create, B create,
# ...), so a drift of the machine (this VM's fsync and wake-up times move by ±0.5 ms at p50
# between runs minutes apart) falls on both sides alike. `delivered.sh` measures one build
# against its anchors; this one says whether a change moved it. Prints p50 / p90 per side and
# B - A; run it twice with the sides swapped before believing a difference.
#
# Usage: scripts/bench/delivered_ab.sh BIN_A BIN_B
# Environment: BENCH_N (samples per side and kind, default 80), BENCH_TIMEOUT (s per sample,
#              default 30), BENCH_ENV_A / BENCH_ENV_B (extra `NAME=value ...` for that
#              side's daemons, e.g. TOKIO_WORKER_THREADS=1), BENCH_KEEP=1 (keep the temp dir).
# Needs: /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${BENCH_N:-80}
TIMEOUT=${BENCH_TIMEOUT:-30}
KEEP=${BENCH_KEEP:-0}
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

. "$ROOT/scripts/bench/lib.sh"
nap_init

[ $# -eq 2 ] || die "usage: $0 BIN_A BIN_B (two dat-mirror binaries; the same one twice with BENCH_ENV_A/B)"
BIN_A=$1
BIN_B=$2
for b in "$BIN_A" "$BIN_B"; do [ -x "$b" ] || die "$b is not an executable"; done
[ -e /dev/fuse ] || die "/dev/fuse is missing (the control folder is a FUSE mount)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
MNT=$WORK/A/mnt
PIDS=()
LOGS=(A/pi.log A/laptop.log B/pi.log B/laptop.log)
cleanup_extra() {
    if mountpoint -q "$WORK/B/mnt" 2>/dev/null; then
        fusermount3 -u "$WORK/B/mnt" 2>/dev/null || umount "$WORK/B/mnt" 2>/dev/null || umount -l "$WORK/B/mnt" || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say "== pair A: $BIN_A ${BENCH_ENV_A:-}"
start_pair "$WORK/A" "$BIN_A" "${BENCH_ENV_A:-}"
say "== pair B: $BIN_B ${BENCH_ENV_B:-}"
start_pair "$WORK/B" "$BIN_B" "${BENCH_ENV_B:-}"

say "== $((4 * (N + 3))) keys"
KEYS=()
for i in $(seq 1 $((4 * (N + 3)))); do KEYS+=("$("$BIN_A" --data "$WORK/keys/$i" id)"); done
rm -rf "$WORK/keys"

NEXT=0
# sample SIDE CREATE: one sample on that side's folder (lib.sh's delivered_sample), appended
# to WORK/samples as "SIDE CREATE microseconds".
sample() {
    local us
    us=$(delivered_sample "$2" "$WORK/$1/mnt/${KEYS[$NEXT]}" "$TIMEOUT") || exit 1
    NEXT=$((NEXT + 1))
    echo "$1 $2 $us" >>"$WORK/samples"
}

say "== $N samples per side and kind, alternating (3 warm-up each)"
for i in $(seq 1 $((N + 3))); do
    for side in A B; do sample "$side" touch; done
    for side in A B; do sample "$side" create; done
done
stop_daemons
cleanup_extra

echo
echo "dat-mirror touch -> delivered A/B — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "A: $BIN_A ${BENCH_ENV_A:-}"
echo "B: $BIN_B ${BENCH_ENV_B:-}"
# The first 3 samples of each side and kind are warm-up.
awk -v n="$N" '
    { k = $1 " " $2; c[k]++; if (c[k] > 3) v[k, c[k] - 3] = $3 / 1000 }
    function q(k, p,   m, i, j, t, a) {
        m = c[k] - 3
        for (i = 1; i <= m; i++) a[i] = v[k, i]
        for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return a[int((m - 1) * p + 0.5) + 1]
    }
    END {
        printf "%-34s %8s %8s %8s %8s %9s\n", "what (ms)", "A p50", "B p50", "A p90", "B p90", "B-A p50"
        split("touch create", kinds, " ")
        for (x = 1; x <= 2; x++) {
            kind = kinds[x]; a = "A " kind; b = "B " kind
            label = kind == "touch" ? "touch -> delivered" : "create(2) by the shell -> delivered"
            printf "%-34s %8.3f %8.3f %8.3f %8.3f %+9.3f\n", label, q(a, 0.5), q(b, 0.5), q(a, 0.9), q(b, 0.9), q(b, 0.5) - q(a, 0.5)
        }
    }' "$WORK/samples"
