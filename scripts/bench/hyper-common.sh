# Shared by scripts/bench/hyper-read.sh and idle-hyper.sh (sourced, not run): the release
# binary, the Node side (scripts/bench/node, pinned; the bridge's modules), a work folder
# cleaned on exit, a local HyperDHT testnet on 127.0.0.1, and bounded waits.
# Nothing leaves this machine: mDNS, the mainline DHT and relays off; the hypercore network
# only where a script turns it on, and then bootstrapped from the local testnet alone.
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TIMEOUT=${BENCH_TIMEOUT:-600}
KEEP=${BENCH_KEEP:-0}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NODE_DIR=$ROOT/scripts/bench/node
BRIDGE_DIR=$ROOT/crates/hyperswarm-bridge/js
export DAT_MIRROR_HYPERSWARM_BRIDGE_DIR=$BRIDGE_DIR

. "$ROOT/scripts/bench/lib.sh"
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }'; }
# field NAME LINE: the value of NAME=... in a `RESULT name k=v ...` line.
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$2"; }

command -v node >/dev/null || die "node is needed (the Node peers and the hyperswarm bridge)"
[ -d "$NODE_DIR/node_modules/hyperdrive" ] || die "run: npm ci --prefix $NODE_DIR"
[ -d "$BRIDGE_DIR/node_modules/hyperswarm" ] || die "run: npm ci --prefix $BRIDGE_DIR"
[ -e /dev/fuse ] || die "/dev/fuse is missing (the control folder is a FUSE mount)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench.XXXXXX")
MNT=$WORK/mnt
PIDS=()     # daemons (TERM, then KILL)
NODES=()    # Node processes reading a FIFO on stdin: "PID FD" (FD 7, 8 or 9; every child
            # process is started with those closed, so closing one reaches its reader)

# stop_node PID FD: closes its stdin (it exits cleanly), kills it after 10 s.
stop_node() {
    local i
    eval "exec $2>&-" 2>/dev/null || true
    for i in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=() n
    for n in "${NODES[@]}"; do [ "$n" = "$1 $2" ] || keep+=("$n"); done
    NODES=("${keep[@]}")
}

LOGS=(pi.log laptop.log testnet.err seed.err)
cleanup_extra() { local n; for n in "${NODES[@]}"; do stop_node $n; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start_node NAME FD ARGS...: `node hyper.js ARGS` with a FIFO on stdin held open on FD
# (closing FD stops it); output in $WORK/NAME.out and .err; sets NODE_PID.
start_node() {
    local name=$1 fd=$2
    shift 2
    mkfifo "$WORK/$name.in"
    (cd "$NODE_DIR" && exec node hyper.js "$@" <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" 7>&- 8>&- 9>&-) &
    NODE_PID=$!
    eval "exec $fd>\"\$WORK/\$name.in\""
    NODES+=("$NODE_PID $fd")
}

# start_testnet: a 3-node HyperDHT testnet on 127.0.0.1; sets BOOTSTRAP (HOST:PORT,...).
start_testnet() {
    start_node testnet 7 testnet 3
    TESTNET_PID=$NODE_PID
    wait_for_line "$WORK/testnet.out" bootstrap 30 "$TESTNET_PID"
    BOOTSTRAP=$(node -e 'console.log(JSON.parse(process.argv[1]).bootstrap.join(","))' "$(head -n1 "$WORK/testnet.out")")
    case "$BOOTSTRAP" in 127.0.0.1:[1-9]*) ;; *) die "testnet bootstrap '$BOOTSTRAP', expected 127.0.0.1:PORT" ;; esac
    say "   HyperDHT testnet on $BOOTSTRAP"
}

# start_mirror DATA ALLOW_ID: `serve` on DATA on the testnet's HyperDHT; sets PI_PID, PEER, HTTP.
start_mirror() {
    DAT_MIRROR_NETWORK_HYPERSWARM=true DAT_MIRROR_NETWORK_HYPERSWARM_BOOTSTRAP=$BOOTSTRAP \
        "$BIN" --data "$1" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 --allow "$2" \
        >"$WORK/pi.out" 2>>"$WORK/pi.log" 7>&- 8>&- 9>&- &
    PI_PID=$!
    PIDS+=("$PI_PID")
    wait_for_line "$WORK/pi.out" '^listening on ' 60 "$PI_PID"
    PEER=$(sed -n 's/^listening on \([^ ]*\) (peers).*/\1/p' "$WORK/pi.out")
    HTTP=$(sed -n 's/.*http:\/\/\([^ ]*\) (HTTP).*/\1/p' "$WORK/pi.out")
    case "$PEER" in 127.0.0.1:[1-9]*) ;; *) die "mirror listens on '$PEER', expected 127.0.0.1:PORT" ;; esac
}

# start_laptop DATA PI_ID: the laptop's control folder at $MNT (iroh only); sets LAPTOP_PID.
start_laptop() {
    mkdir -p "$MNT"
    "$BIN" --data "$1" mount "$MNT" --mirror "$2@$PEER" --listen 127.0.0.1:0 \
        >"$WORK/laptop.out" 2>>"$WORK/laptop.log" 7>&- 8>&- 9>&- &
    LAPTOP_PID=$!
    PIDS+=("$LAPTOP_PID")
    wait_for_line "$WORK/laptop.out" '^control folder mounted' 30 "$LAPTOP_PID"
    mountpoint -q "$MNT" || die "$MNT is not mounted"
}

# wait_mirrored KEY: bounded wait until the laptop's entry for KEY says `mirrored`.
wait_mirrored() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while :; do
        state=$(sed -n 's/^state: //p' "$MNT/$1" 2>/dev/null || true)
        [[ "$state" == mirrored* ]] && break
        kill -0 "$PI_PID" 2>/dev/null || die "the mirror exited"
        [ "$SECONDS" -lt "$deadline" ] || die "$1 not mirrored after $TIMEOUT s (state '$state')"
        sleep 0.05
    done
}

build() {
    say "== build: cargo build --release --bin dat-mirror --examples (waits if cargo's lock is busy)"
    (cd "$ROOT" && cargo build --release --bin dat-mirror --examples)
    BIN=$TARGET/release/dat-mirror
    EX=$TARGET/release/examples
    for b in "$BIN" "$EX/bench_inprocess"; do [ -x "$b" ] || die "$b was not built"; done
}
