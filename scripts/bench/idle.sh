#!/usr/bin/env bash
# Idle cost benchmark: CPU seconds and RSS of a mirror (`dat-mirror serve`) that holds 100
# small sites (BENCH_SITES) and has nothing to do, over 60 s (BENCH_IDLE_S), against the
# same mirror holding 0 sites measured in the same run.
#   1. a laptop publishes 100 small sites and asks the mirror for each (`touch` in the
#      control folder); the mirror replicates them all (`dat-mirror status` shows them
#      mirrored); then the laptop stops;
#   2. the mirror is restarted (as after a reboot: it reopens its 100 sites), left 10 s to
#      settle, then measured for 60 s: utime+stime from /proc/PID/stat, VmRSS from
#      /proc/PID/status at the start and the end of the window;
#   3. a fresh mirror with no sites (same allow list) is measured the same way.
# Everything runs on 127.0.0.1 with relays, mDNS and DHT off; nothing leaves the machine.
#
# Usage: scripts/bench/idle.sh
# Environment: BENCH_SITES (default 100), BENCH_IDLE_S (default 60), BENCH_SETTLE_S (10),
#              BENCH_TIMEOUT (s for the setup sync, default 300), BENCH_KEEP=1, TMPDIR.
# Needs: cargo, /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SITES=${BENCH_SITES:-100}
IDLE=${BENCH_IDLE_S:-60}
SETTLE=${BENCH_SETTLE_S:-10}
TIMEOUT=${BENCH_TIMEOUT:-300}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

. "$ROOT/scripts/bench/lib.sh"

[ -e /dev/fuse ] || die "/dev/fuse is missing (the control folder is a FUSE mount)"

say "== build: cargo build --release --bin dat-mirror (waits if cargo's lock is busy)"
(cd "$ROOT" && cargo build --release --bin dat-mirror)
BIN=$TARGET/release/dat-mirror
[ -x "$BIN" ] || die "$BIN was not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
MNT=$WORK/mnt
PIDS=()

trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start_mirror DATA: starts `serve` on DATA; sets PI_PID and PEER.
start_mirror() {
    "$BIN" --data "$1" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 --allow "$LAPTOP_ID" \
        >"$WORK/pi.out" 2>>"$WORK/pi.log" &
    PI_PID=$!
    PIDS+=("$PI_PID")
    wait_for_line "$WORK/pi.out" '^listening on ' 60 "$PI_PID"
    PEER=$(sed -n 's/^listening on \([^ ]*\) (peers).*/\1/p' "$WORK/pi.out")
    case "$PEER" in 127.0.0.1:[1-9]*) ;; *) die "mirror listens on '$PEER'" ;; esac
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }

# measure NAME: settle, then CPU and RSS of $PI_PID over $IDLE s; sets RESULT_<NAME>.
measure() {
    say "   settling $SETTLE s, then measuring $IDLE s"
    sleep "$SETTLE"
    kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited"
    local c0 r0 c1 r1 t
    c0=$(cpu_ticks "$PI_PID"); r0=$(rss_kib "$PI_PID")
    sleep "$IDLE"
    kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited while idle"
    c1=$(cpu_ticks "$PI_PID"); r1=$(rss_kib "$PI_PID"); t=$(threads "$PI_PID")
    printf -v "RESULT_$1" '%s %s %s %s' \
        "$(awk -v a="$c0" -v b="$c1" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / h }')" \
        "$r0" "$r1" "$t"
}

LAPTOP_ID=$("$BIN" --data "$WORK/laptop" id)
PI_ID=$("$BIN" --data "$WORK/pi" id)

# ---------------------------------------------------------------------------------------
say "== $SITES small sites, published on the laptop"
KEYS=()
for i in $(seq 1 "$SITES"); do
    d=$WORK/sites/$i
    mkdir -p "$d/css"
    printf '<!doctype html><h1>site %d</h1>\n' "$i" >"$d/index.html"
    printf 'body { margin: %dpx }\n' "$i" >"$d/css/site.css"
    head -c 3000 /dev/urandom >"$d/photo.bin"
    LINK=$("$BIN" --data "$WORK/laptop" publish "$d" 2>/dev/null)
    KEYS+=("${LINK#hyper://}")
done

say "== mirror + laptop; touch every site; wait until all are mirrored"
start_mirror "$WORK/pi"
mkdir -p "$MNT"
"$BIN" --data "$WORK/laptop" mount "$MNT" --mirror "$PI_ID@$PEER" --listen 127.0.0.1:0 \
    >"$WORK/laptop.out" 2>"$WORK/laptop.log" &
LAPTOP_PID=$!
PIDS+=("$LAPTOP_PID")
wait_for_line "$WORK/laptop.out" '^control folder mounted' 30 "$LAPTOP_PID"
for k in "${KEYS[@]}"; do touch "$MNT/$k"; done
DEADLINE=$((SECONDS + TIMEOUT))
while :; do
    HELD=$("$BIN" --data "$WORK/laptop" status 2>/dev/null | awk -v id="$PI_ID" '$1 == id { print $4 }')
    [ "${HELD:-0}" -ge "$SITES" ] && break
    [ "$SECONDS" -lt "$DEADLINE" ] || die "only ${HELD:-0} of $SITES sites mirrored after $TIMEOUT s"
    sleep 1
done
say "   the mirror holds $HELD sites"
stop_daemons

say "== mirror holding $SITES sites, restarted, idle (no laptop connected)"
start_mirror "$WORK/pi"
measure FULL
stop_daemons
du_full=$(du -sk "$WORK/pi" | cut -f1)

say "== the same mirror setup holding 0 sites"
start_mirror "$WORK/pi0"
measure EMPTY
stop_daemons

# ---------------------------------------------------------------------------------------
read -r CPU_F R0_F R1_F T_F <<<"$RESULT_FULL"
read -r CPU_E R0_E R1_E T_E <<<"$RESULT_EMPTY"
row() { # label cpu rss0 rss1 threads
    awk -v l="$1" -v c="$2" -v a="$3" -v b="$4" -v t="$5" -v w="$IDLE" 'BEGIN {
        printf "%-30s %10.2f %9.2f%% %12.1f %12.1f %8d\n", l, c, 100 * c / w, a / 1024, b / 1024, t }'
}
echo
echo "dat-mirror idle benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "release build, loopback; each mirror restarted, settled ${SETTLE} s, measured over ${IDLE} s; data of the full mirror: ${du_full} KiB"
printf '%-30s %10s %10s %12s %12s %8s\n' "mirror" "cpu s" "cpu %" "RSS0 MiB" "RSS1 MiB" "threads"
row "holding $SITES sites" "$CPU_F" "$R0_F" "$R1_F" "$T_F"
row "holding 0 sites (baseline)" "$CPU_E" "$R0_E" "$R1_E" "$T_E"
awk -v cf="$CPU_F" -v ce="$CPU_E" -v rf="$R1_F" -v re="$R1_E" -v n="$SITES" 'BEGIN {
    printf "ratio full/empty: CPU %s, RSS %.2fx (+%.1f KiB per site)\n",
        (ce > 0 ? sprintf("%.1fx", cf / ce) : (cf > 0 ? "inf (baseline 0.00 s)" : "1x (both 0)")), rf / re, (rf - re) / n }'
bench_row "idle mirror, $SITES sites, routes off, ${IDLE} s" \
    "$(awk -v c="$CPU_F" -v w="$IDLE" -v r="$R1_F" 'BEGIN { printf "%.2f %% CPU, %.1f MiB", 100 * c / w, r / 1024 }')" \
    "0 sites: $(awk -v c="$CPU_E" -v w="$IDLE" -v r="$R1_E" 'BEGIN { printf "%.2f %% CPU, %.1f MiB", 100 * c / w, r / 1024 }')" \
    "$(awk -v rf="$R1_F" -v re="$R1_E" 'BEGIN { printf "%.2fx RSS", rf / re }')" "< 1 % CPU, < 40 MiB"
