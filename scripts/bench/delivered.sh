#!/usr/bin/env bash
# Latency benchmark: time from `touch MNT/<key>` in the laptop's control folder until the
# entry says `state: delivered` (the mirror replicated the command and acknowledged it in its
# status log, and the laptop replicated that back). 50 samples (BENCH_N), each with a new
# key; after each sample the key is removed again (`rm`, waited for) so the mirror set stays
# empty. Prints median, p90, min and max, and the ratio against a raw baseline measured in
# the same run: a small-message round trip and a fresh connection between two iroh
# endpoints on 127.0.0.1 (examples/bench_rtt.rs), and the loop's own cost (`touch` of a new
# file in a plain folder and one read of it: a fork and exec, no dat-mirror). Interleaved
# with those samples, as many created by the shell's own redirection (`: >MNT/<key>`, the
# same create(2) with no process started): what dat-mirror itself takes.
# Everything runs on 127.0.0.1 with relays, mDNS and DHT off; nothing leaves the machine.
#
# Usage: scripts/bench/delivered.sh
# Environment: BENCH_N (default 50), BENCH_TIMEOUT (s per sample, default 30),
#              BENCH_KEEP=1 (keep the temp dir), TMPDIR (where the temp dir goes),
#              BENCH_BIN (a dat-mirror binary to measure instead of the one built).
# Needs: cargo, /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${BENCH_N:-50}
TIMEOUT=${BENCH_TIMEOUT:-30}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

. "$ROOT/scripts/bench/lib.sh"
nap_init
# field NAME LINE: the value of NAME=... in a `RESULT name k=v ...` line.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }

[ -e /dev/fuse ] || die "/dev/fuse is missing (the control folder is a FUSE mount)"

say "== build: cargo build --release --bin dat-mirror --example bench_rtt (waits if cargo's lock is busy)"
(cd "$ROOT" && cargo build --release --bin dat-mirror --example bench_rtt)
BIN=${BENCH_BIN:-$TARGET/release/dat-mirror} # BENCH_BIN: a given build, to compare
RTT=$TARGET/release/examples/bench_rtt
for b in "$BIN" "$RTT"; do [ -x "$b" ] || die "$b was not built"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
MNT=$WORK/mnt
PIDS=()

trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------
say "== mirror + laptop on 127.0.0.1"
start_pair "$WORK" "$BIN" ""

# Keys: real ed25519 public keys (identities of throwaway data folders), so the mirror
# accepts them and waits for a peer that has the site (nobody does: `delivered` stays).
say "== $((2 * N + 6)) keys"
KEYS=()
for i in $(seq 0 $((2 * N + 5))); do
    KEYS+=("$("$BIN" --data "$WORK/keys/$i" id)")
done
rm -rf "$WORK/keys"

# sample CREATE KEY: one sample (lib.sh's delivered_sample), in seconds.
sample() {
    local us
    us=$(delivered_sample "$1" "$MNT/$2" "$TIMEOUT") || exit 1
    awk -v u="$us" 'BEGIN { printf "%.6f\n", u / 1e6 }'
}

# Alternating: a `touch` sample (the goal's measure), then one created by the shell itself
# (the same create(2) with no process started: what dat-mirror takes, without `touch`).
# The first 3 of each are warm-up (first command on a fresh log and connection).
SAMPLES=()
CREATES=()
for i in $(seq 0 $((N + 2))); do
    T=$(sample touch "${KEYS[$i]}") || exit 1
    [ "$i" -ge 3 ] && SAMPLES+=("$T")
    T=$(sample redirect "${KEYS[$((N + 3 + i))]}") || exit 1
    [ "$i" -ge 3 ] && CREATES+=("$T")
done
stop_daemons

# What the loop above costs without dat-mirror: `touch` of a new file (a fork and exec)
# plus one read of it, in a plain folder (tmpfs when there is one).
say "== touch of a plain file (the same loop's own cost)"
PLAIN=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "$WORK")/dat-mirror-bench.XXXXXX")
TOUCHES=()
for i in $(seq 0 $((N + 2))); do
    T0=$EPOCHREALTIME
    touch "$PLAIN/$i"
    state_of "$PLAIN/$i"
    T1=$EPOCHREALTIME
    [ "$i" -ge 3 ] && TOUCHES+=("$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.6f", b - a }')")
done
rm -rf "$PLAIN"

say "== raw iroh baseline on 127.0.0.1"
RAW=$("$RTT" "$N")
RTT_LINE=$(grep '^RESULT rtt ' <<<"$RAW") || die "no rtt result"
CONNECT_LINE=$(grep '^RESULT connect ' <<<"$RAW") || die "no connect result"

# ---------------------------------------------------------------------------------------
stats() { # prints "median p90 min max p99" of the numbers on stdin
    sort -g | awk '{ v[NR] = $1 } END {
        m = v[int((NR - 1) * 0.5 + 0.5) + 1]; p = v[int((NR - 1) * 0.9 + 0.5) + 1]
        q = v[int((NR - 1) * 0.99 + 0.5) + 1]
        printf "%s %s %s %s %s\n", m, p, v[1], v[NR], q }'
}
read -r MED P90 MIN MAX P99 < <(printf '%s\n' "${SAMPLES[@]}" | stats)
read -r T_MED T_P90 T_MIN T_MAX _ < <(printf '%s\n' "${TOUCHES[@]}" | stats)
read -r C_MED C_P90 C_MIN C_MAX C_P99 < <(printf '%s\n' "${CREATES[@]}" | stats)
RTT_MED=$(field median "$RTT_LINE")
CONN_MED=$(field median "$CONNECT_LINE")
ms() { awk -v s="$1" 'BEGIN { printf "%9.3f", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%9.1fx", a / b }'; }
echo
echo "dat-mirror touch -> delivered benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "release build, loopback, FUSE control folder; ${#SAMPLES[@]} samples after 3 warm-up"
printf '%-44s %9s %9s %9s %9s %10s\n' "what (ms)" "median" "p90" "min" "max" "median/rtt"
printf '%-44s %s %s %s %s %s\n' "touch -> 'state: delivered'" "$(ms "$MED")" "$(ms "$P90")" "$(ms "$MIN")" "$(ms "$MAX")" "$(ratio "$MED" "$RTT_MED")"
printf '%-44s %s %s %s %s %s\n' "create(2) by the shell -> 'state: delivered'" "$(ms "$C_MED")" "$(ms "$C_P90")" "$(ms "$C_MIN")" "$(ms "$C_MAX")" "$(ratio "$C_MED" "$RTT_MED")"
printf '%-44s %s %s %s %s %s\n' "touch + read of a plain file (the loop itself)" "$(ms "$T_MED")" "$(ms "$T_P90")" "$(ms "$T_MIN")" "$(ms "$T_MAX")" "$(ratio "$T_MED" "$RTT_MED")"
for l in "$RTT_LINE:raw iroh: 64-byte round trip" "$CONNECT_LINE:raw iroh: new connection"; do
    line=${l%%:*}
    printf '%-44s %s %s %s %s %s\n' "${l#*:}" "$(ms "$(field median "$line")")" "$(ms "$(field p90 "$line")")" \
        "$(ms "$(field min "$line")")" "$(ms "$(field max "$line")")" "$(ratio "$(field median "$line")" "$RTT_MED")"
done
echo
echo "touch -> delivered is $(awk -v a="$MED" -v b="$CONN_MED" 'BEGIN { printf "%.1f", a / b }')x a fresh raw connection (median)"
bench_row "touch -> 'state: delivered', loopback, p50 / p90 / p99" \
    "$(awk -v a="$MED" -v b="$P90" -v c="$P99" 'BEGIN { printf "%.1f / %.1f / %.1f ms", a * 1000, b * 1000, c * 1000 }')" \
    "raw iroh RTT $(awk -v a="$RTT_MED" 'BEGIN { printf "%.2f ms", a * 1000 }'); touch of a plain file $(awk -v a="$T_MED" 'BEGIN { printf "%.2f ms", a * 1000 }')" \
    "$(awk -v a="$MED" -v b="$RTT_MED" 'BEGIN { printf "%.0fx", a / b }')" "p50 <= 3 ms, p99 <= 10 ms"
bench_row "create(2) by the shell -> 'state: delivered', p50 / p90 / p99" \
    "$(awk -v a="$C_MED" -v b="$C_P90" -v c="$C_P99" 'BEGIN { printf "%.1f / %.1f / %.1f ms", a * 1000, b * 1000, c * 1000 }')" \
    "raw iroh RTT $(awk -v a="$RTT_MED" 'BEGIN { printf "%.2f ms", a * 1000 }')" \
    "$(awk -v a="$C_MED" -v b="$RTT_MED" 'BEGIN { printf "%.0fx", a / b }')" "(no touch process)"
