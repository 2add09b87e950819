#!/usr/bin/env bash
# Idle cost on the hypercore network: CPU and RSS of the mirror daemon (`dat-mirror serve`)
# *and* its hyperswarm bridge (the Node child process) together, while the mirror holds 100
# small sites (BENCH_SITES) announced on a local HyperDHT testnet (3 nodes on 127.0.0.1;
# hyperswarm on, bootstrap = the testnet), over 60 s (BENCH_IDLE_S). Goal: < 1 % CPU, < 80 MiB.
#   1. a laptop publishes 100 small sites and asks the mirror for each (`touch` in the control
#      folder); the mirror replicates them (`dat-mirror status` counts them); the laptop stops;
#   2. the mirror is restarted alone (as after a reboot: it reopens and re-announces its 100
#      sites), left 10 s to settle, then measured for 60 s: utime+stime of the daemon and every
#      descendant (the bridge) from /proc/PID/stat, VmRSS summed at the start and the end;
#   3. proof the sites are announced: fresh Node hyperdrive 13 readers find the first and the
#      last site on the testnet and read them from the mirror alone (byte-identical);
#   4. a fresh mirror with no sites, on the same testnet, is measured the same way.
# Nothing leaves the machine: mDNS, mainline DHT and relays off; HyperDHT = the local testnet.
#
# Usage: scripts/bench/idle-hyper.sh
# Environment: BENCH_SITES (default 100), BENCH_IDLE_S (60), BENCH_SETTLE_S (10),
#              BENCH_TIMEOUT (s for the setup sync, default 600), BENCH_KEEP=1, TMPDIR.
# Needs: cargo, node + `npm ci --prefix scripts/bench/node` and the bridge's modules,
#        /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/hyper-common.sh"
SITES=${BENCH_SITES:-100}
IDLE=${BENCH_IDLE_S:-60}
SETTLE=${BENCH_SETTLE_S:-10}

build

# descendants PID: PID and every process below it.
descendants() {
    local c
    echo "$1"
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; done
}
cpu_ticks() { local p s=0; for p in $(descendants "$1"); do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$s"; }
rss_kib() { local p s=0; for p in $(descendants "$1"); do s=$((s + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$s"; }
nprocs() { descendants "$1" | wc -l; }

# measure NAME: settle, then CPU and RSS of $PI_PID + descendants over $IDLE s; sets RESULT_<NAME>.
measure() {
    say "   settling $SETTLE s, then measuring $IDLE s (daemon + bridge)"
    sleep "$SETTLE"
    kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited"
    [ "$(nprocs "$PI_PID")" -ge 2 ] || die "the mirror has no bridge process (is the hypercore network on?)"
    local c0 r0 c1 r1 n
    c0=$(cpu_ticks "$PI_PID"); r0=$(rss_kib "$PI_PID")
    sleep "$IDLE"
    kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited while idle"
    c1=$(cpu_ticks "$PI_PID"); r1=$(rss_kib "$PI_PID"); n=$(nprocs "$PI_PID")
    say "   daemon RSS $(awk '/^VmRSS:/ { print $2 }' /proc/$PI_PID/status) KiB of $r1 KiB ($n processes)"
    printf -v "RESULT_$1" '%s %s %s %s' \
        "$(awk -v a="$c0" -v b="$c1" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / h }')" \
        "$r0" "$r1" "$n"
}

say "== local HyperDHT testnet"
start_testnet
LAPTOP_ID=$("$BIN" --data "$WORK/laptop" id)
PI_ID=$("$BIN" --data "$WORK/pi" id)

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

say "== mirror (on the testnet) + laptop; touch every site; wait until all are mirrored"
start_mirror "$WORK/pi" "$LAPTOP_ID"
start_laptop "$WORK/laptop" "$PI_ID"
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

say "== mirror holding $SITES sites, restarted alone, idle on the HyperDHT testnet"
start_mirror "$WORK/pi" "$LAPTOP_ID"
measure FULL
say "== are they announced? fresh Node hyperdrive 13 readers of the first and last site"
CHECKS=""
for i in 1 "$SITES"; do
    R=$(cd "$NODE_DIR" && timeout 120 node hyper.js read "$BOOTSTRAP" "${KEYS[$((i - 1))]}" "$WORK/r$i" "$WORK/sites/$i" 7>&- 8>&-) \
        || die "a Node reader could not read site $i from the mirror"
    [ "$(field peers "$R")" = 1 ] || die "site $i: $(field peers "$R") peers"
    CHECKS+="site $i: $(field files "$R") files in $(field secs "$R") s; "
    say "   $R"
done
stop_daemons
du_full=$(du -sk "$WORK/pi" | cut -f1)

say "== the same mirror setup holding 0 sites (baseline), on the testnet"
start_mirror "$WORK/pi0" "$LAPTOP_ID"
measure EMPTY
stop_daemons

# ---------------------------------------------------------------------------------------
read -r CPU_F R0_F R1_F N_F <<<"$RESULT_FULL"
read -r CPU_E R0_E R1_E N_E <<<"$RESULT_EMPTY"
row() { # label cpu rss0 rss1 procs
    awk -v l="$1" -v c="$2" -v a="$3" -v b="$4" -v n="$5" -v w="$IDLE" 'BEGIN {
        printf "%-44s %8.2f %8.2f%% %10.1f %10.1f %6d\n", l, c, 100 * c / w, a / 1024, b / 1024, n }'
}
echo
echo "dat-mirror idle benchmark on the hypercore network — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "release build; hyperswarm on, bootstrap = a local HyperDHT testnet (127.0.0.1); each mirror restarted, settled ${SETTLE} s, measured over ${IDLE} s; daemon + bridge summed; data of the full mirror: ${du_full} KiB"
printf '%-44s %8s %9s %10s %10s %6s\n' "mirror (daemon + bridge)" "cpu s" "cpu %" "RSS0 MiB" "RSS1 MiB" "procs"
row "holding $SITES sites, announced" "$CPU_F" "$R0_F" "$R1_F" "$N_F"
row "holding 0 sites (baseline)" "$CPU_E" "$R0_E" "$R1_E" "$N_E"
awk -v c="$CPU_F" -v r="$R1_F" -v w="$IDLE" 'BEGIN {
    printf "goal < 1 %% CPU and < 80 MiB with %s: %.2f %% CPU (%s), %.1f MiB (%s)\n", "the sites",
        100 * c / w, (100 * c / w < 1 ? "met" : "NOT met"), r / 1024, (r / 1024 < 80 ? "met" : "NOT met") }'
echo "announced: $CHECKS(each read by a fresh Node hyperdrive 13 reader from the mirror alone, byte-identical)"
