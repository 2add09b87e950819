#!/usr/bin/env bash
# Many-sites benchmark: a mirror holding 1,000 small sites (BENCH_SITES), measured two ways:
#   1. `ls -l` of the laptop's control folder, which then has one entry per site: wall time
#      (median of BENCH_RUNS, after one warm-up listing), against `ls -l` of a folder on tmpfs
#      (/dev/shm, else the temp dir) holding the same names with the same contents; twice:
#      back to back, and "cold", each listing 1.2 s after the last one touched the folder, when
#      the kernel's cached entries and attributes (1 s) have run out;
#   2. mirror start: the mirror is stopped and started again (as after a reboot), and timed
#      from the spawn until its HTTP gateway serves the index.html of the site it starts last
#      (the key that sorts last) with 200 (and, for reference, until it answers any request).
# Set-up: the laptop publishes the sites before its daemon starts, then asks the mirror for
# each (`touch` in the control folder) and waits until `dat-mirror status` shows them all held.
# Everything runs on 127.0.0.1 with relays, mDNS and DHT off; nothing leaves the machine.
#
# Usage: scripts/bench/sites.sh
# Environment: BENCH_SITES (default 1000), BENCH_RUNS (default 5), BENCH_TIMEOUT (s for the
#              setup sync, default 900), BENCH_KEEP=1, TMPDIR, BENCH_BIN (a dat-mirror binary
#              to use instead of building one).
# Needs: cargo, curl, python3, /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail
# Nothing may leave this machine: mDNS, the DHT and relays off (peers meet on 127.0.0.1).
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SITES=${BENCH_SITES:-1000}
RUNS=${BENCH_RUNS:-5}
TIMEOUT=${BENCH_TIMEOUT:-900}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

. "$ROOT/scripts/bench/lib.sh"

command -v curl >/dev/null || die "curl is needed"
[ -e /dev/fuse ] || die "/dev/fuse is missing (the control folder is a FUSE mount)"

say "== build: cargo build --release --bin dat-mirror (waits if cargo's lock is busy)"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN # a given build (e.g. an older one, to compare)
else
  (cd "$ROOT" && cargo build --release --bin dat-mirror)
  BIN=$TARGET/release/dat-mirror
fi
[ -x "$BIN" ] || die "$BIN was not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
MNT=$WORK/mnt
SHM=""
PIDS=()

STOP_TRIES=200
cleanup_extra() { if [ -n "$SHM" ]; then rm -rf "$SHM"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket,"SOCK_"+sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
PEER_PORT=$(free_port DGRAM)
HTTP_PORT=$(free_port STREAM)

# start_mirror: starts `serve` on $WORK/pi at fixed ports; sets PI_PID.
start_mirror() {
    : >"$WORK/pi.out"
    "$BIN" --data "$WORK/pi" serve --listen "127.0.0.1:$PEER_PORT" --http "127.0.0.1:$HTTP_PORT" \
        --allow "$LAPTOP_ID" >"$WORK/pi.out" 2>>"$WORK/pi.log" &
    PI_PID=$!
    PIDS+=("$PI_PID")
}

# secs_of CMD...: wall seconds of CMD (output discarded).
secs_of() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f\n", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

LAPTOP_ID=$("$BIN" --data "$WORK/laptop" id)
PI_ID=$("$BIN" --data "$WORK/pi" id)

# ---------------------------------------------------------------------------------------
say "== $SITES small sites, published on the laptop"
KEYS=()
T=$EPOCHREALTIME
for i in $(seq 1 "$SITES"); do
    d=$WORK/sites/$i
    mkdir -p "$d"
    printf '<!doctype html><h1>site %d</h1>\n' "$i" >"$d/index.html"
    LINK=$("$BIN" --data "$WORK/laptop" publish "$d" 2>/dev/null)
    KEYS+=("${LINK#hyper://}")
done
rm -rf "$WORK/sites"
say "   published in $(awk -v a="$T" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

say "== mirror + laptop; touch every site; wait until all are held"
start_mirror
wait_for_line "$WORK/pi.out" '^listening on ' 60 "$PI_PID"
mkdir -p "$MNT"
"$BIN" --data "$WORK/laptop" mount "$MNT" --mirror "$PI_ID@127.0.0.1:$PEER_PORT" --listen 127.0.0.1:0 \
    >"$WORK/laptop.out" 2>"$WORK/laptop.log" &
LAPTOP_PID=$!
PIDS+=("$LAPTOP_PID")
wait_for_line "$WORK/laptop.out" '^control folder mounted' 30 "$LAPTOP_PID"
T=$EPOCHREALTIME
for k in "${KEYS[@]}"; do touch "$MNT/$k"; done
DEADLINE=$((SECONDS + TIMEOUT))
while :; do
    HELD=$("$BIN" --data "$WORK/laptop" status 2>/dev/null | awk -v id="$PI_ID" '$1 == id { print $4 }')
    [ "${HELD:-0}" -ge "$SITES" ] && break
    [ "$SECONDS" -lt "$DEADLINE" ] || die "only ${HELD:-0} of $SITES sites held after $TIMEOUT s"
    sleep 1
done
say "   the mirror holds $HELD sites ($(awk -v a="$T" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s after the first touch)"

# ---------------------------------------------------------------------------------------
say "== ls -l of the control folder ($SITES entries) vs tmpfs, median of $RUNS"
N_ENTRIES=$(find "$MNT" -mindepth 1 -maxdepth 1 | wc -l)
[ "$N_ENTRIES" -ge "$SITES" ] || die "the control folder shows $N_ENTRIES entries, expected $SITES"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    SHM=$(mktemp -d /dev/shm/dat-mirror-bench.XXXXXX)
    PLAIN=$SHM
    PLAIN_LABEL="tmpfs"
else
    PLAIN=$WORK/plain
    mkdir -p "$PLAIN"
    PLAIN_LABEL="plain folder (no /dev/shm)"
fi
for f in "$MNT"/*; do cat "$f" >"$PLAIN/$(basename "$f")"; done
ls -l "$MNT" >/dev/null
ls -l "$PLAIN" >/dev/null
: >"$WORK/ls_ctl" >"$WORK/ls_tmp" >"$WORK/ls_ctl_cold" >"$WORK/ls_tmp_cold"
for _ in $(seq "$RUNS"); do
    secs_of ls -l "$MNT" >>"$WORK/ls_ctl"
    secs_of ls -l "$PLAIN" >>"$WORK/ls_tmp"
done
for _ in $(seq "$RUNS"); do
    sleep 1.2
    secs_of ls -l "$MNT" >>"$WORK/ls_ctl_cold"
    secs_of ls -l "$PLAIN" >>"$WORK/ls_tmp_cold"
done
LS_CTL=$(median <"$WORK/ls_ctl")
LS_TMP=$(median <"$WORK/ls_tmp")
LS_CTL_COLD=$(median <"$WORK/ls_ctl_cold")
LS_TMP_COLD=$(median <"$WORK/ls_tmp_cold")
stop_daemons

# ---------------------------------------------------------------------------------------
say "== mirror start holding $SITES sites: spawn -> HTTP serves the last site (median of $RUNS)"
# The mirror starts its sites in key order, so the site whose key sorts last is the last one
# it can serve: timing that one is timing the whole start.
LAST=$(printf '%s\n' "${KEYS[@]}" | sort | tail -n 1)
for i in "${!KEYS[@]}"; do [ "${KEYS[$i]}" = "$LAST" ] && LAST_N=$((i + 1)); done
URL_SITE="http://127.0.0.1:$HTTP_PORT/$LAST/index.html"
URL_ANY="http://127.0.0.1:$HTTP_PORT/.well-known/dat-mirror"
: >"$WORK/start_any" >"$WORK/start_site"
for r in $(seq "$RUNS"); do
    T0=$EPOCHREALTIME
    start_mirror
    ANY=""
    DEADLINE=$((SECONDS + 60))
    while :; do
        if [ -z "$ANY" ] && curl -s -o /dev/null --max-time 1 "$URL_ANY" 2>/dev/null; then
            ANY=$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f", b - a }')
        fi
        if [ -n "$ANY" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL_SITE" 2>/dev/null)" = 200 ]; then
            break
        fi
        kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited during start $r"
        [ "$SECONDS" -lt "$DEADLINE" ] || die "start $r: the last site is not served after 60 s"
        sleep 0.005
    done
    awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f\n", b - a }' >>"$WORK/start_site"
    echo "$ANY" >>"$WORK/start_any"
    curl -s --max-time 2 "$URL_SITE" | grep -q "site $LAST_N<" || die "start $r: wrong content for the last site"
    stop_daemons
done
START_ANY=$(median <"$WORK/start_any")
START_SITE=$(median <"$WORK/start_site")

# ---------------------------------------------------------------------------------------
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
echo
echo "dat-mirror many-sites benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "release build, loopback; $SITES sites held; medians of $RUNS runs"
printf '%-52s %10s\n' "what" "ms"
printf '%-52s %10s\n' "ls -l of the control folder ($N_ENTRIES entries)" "$(ms "$LS_CTL")"
printf '%-52s %10s\n' "ls -l of the same names and contents on $PLAIN_LABEL" "$(ms "$LS_TMP")"
printf '%-52s %10s\n' "  the same, cold (1.2 s after the last listing)" "$(ms "$LS_CTL_COLD")"
printf '%-52s %10s\n' "  $PLAIN_LABEL, cold" "$(ms "$LS_TMP_COLD")"
printf '%-52s %10s\n' "mirror start -> HTTP answers (status JSON)" "$(ms "$START_ANY")"
printf '%-52s %10s\n' "mirror start -> HTTP serves the last site (200)" "$(ms "$START_SITE")"
bench_row "ls -l of a control folder with $SITES sites" "$(ms "$LS_CTL") ms" "$PLAIN_LABEL $(ms "$LS_TMP") ms" \
    "$(awk -v a="$LS_CTL" -v b="$LS_TMP" 'BEGIN { printf "%.1fx", a / b }')" "< 20 ms"
bench_row "ls -l, $SITES sites, cold (cache ran out)" "$(ms "$LS_CTL_COLD") ms" "$PLAIN_LABEL $(ms "$LS_TMP_COLD") ms" \
    "$(awk -v a="$LS_CTL_COLD" -v b="$LS_TMP_COLD" 'BEGIN { printf "%.1fx", a / b }')" "< 20 ms"
bench_row "mirror start, $SITES sites held, to serving HTTP" "$(ms "$START_SITE") ms (any answer $(ms "$START_ANY") ms)" "-" "-" "< 1 s"
