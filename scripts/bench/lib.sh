# Shared by the benchmark scripts that run daemons (sourced, not run): messages, bench_row
# for all.sh's table, bounded waits, stopping daemons and cleaning up on exit, and one
# touch -> `state: delivered` sample (delivered.sh, delivered_ab.sh).
# The sourcing script sets, before any of these run: WORK (its temp folder), MNT (a mount
# point to unmount, may not exist), PIDS (daemons: TERM, then KILL), KEEP (1: keep WORK).
# Optional: STOP_TRIES (50 ms waits for a daemon to exit after TERM, default 100),
# LOGS (files in WORK whose tails are shown when the script fails; default pi.log
# laptop.log), and a function cleanup_extra (run on exit after the daemons stop).
# The script installs the traps once WORK exists:
#   trap cleanup EXIT; trap 'exit 130' INT TERM HUP

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# One row for scripts/bench/all.sh's table when BENCH_ROWS names a file (tab-separated:
# path, ours, anchor, ratio, goal); nothing otherwise.
bench_row() { if [ -n "${BENCH_ROWS:-}" ]; then printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_ROWS"; fi; }

stop_daemons() {
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq "${STOP_TRIES:-100}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if mountpoint -q "$MNT" 2>/dev/null; then
        fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT" || true
    fi
}

cleanup() {
    local rc=$? f logs=(pi.log laptop.log)
    set +e
    [ -n "${LOGS+x}" ] && logs=("${LOGS[@]}")
    stop_daemons
    if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
    if [ "$rc" -ne 0 ]; then
        for f in "${logs[@]}"; do
            [ -s "$WORK/$f" ] && { say "--- last lines of $f"; tail -n 20 "$WORK/$f" >&2; }
        done
    fi
    if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
# wait_for_line FILE REGEX SECONDS PID: bounded wait until a process prints a line.
wait_for_line() {
    local deadline=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$4" 2>/dev/null || die "$(basename "$1" .out) exited early"
        [ "$SECONDS" -lt "$deadline" ] || die "no '$2' in $1 after $3 s"
        sleep 0.05
    done
}

# --- touch -> `state: delivered` samples (delivered.sh, delivered_ab.sh) ---------------------
# start_pair DIR BIN ENV: a mirror (data DIR/pi) and a laptop (data DIR/laptop) whose control
# folder is mounted at DIR/mnt, both on 127.0.0.1, started with BIN under ENV (`NAME=value`
# words, may be empty; their output in DIR/pi.out|log and DIR/laptop.out|log, their pids
# added to PIDS); returns once the laptop is connected to the mirror.
start_pair() {
    local dir=$1 bin=$2 env=$3 laptop_id pi_id peer deadline
    mkdir -p "$dir/mnt"
    laptop_id=$("$bin" --data "$dir/laptop" id)
    pi_id=$("$bin" --data "$dir/pi" id)
    # shellcheck disable=SC2086 # ENV is a list of NAME=value words
    env $env "$bin" --data "$dir/pi" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 \
        --allow "$laptop_id" >"$dir/pi.out" 2>"$dir/pi.log" &
    PIDS+=($!)
    wait_for_line "$dir/pi.out" '^listening on ' 30 $!
    peer=$(sed -n 's/^listening on \([^ ]*\) (peers).*/\1/p' "$dir/pi.out")
    case "$peer" in 127.0.0.1:[1-9]*) ;; *) die "mirror listens on '$peer', expected 127.0.0.1:PORT" ;; esac
    # shellcheck disable=SC2086
    env $env "$bin" --data "$dir/laptop" mount "$dir/mnt" --mirror "$pi_id@$peer" \
        --listen 127.0.0.1:0 >"$dir/laptop.out" 2>"$dir/laptop.log" &
    PIDS+=($!)
    wait_for_line "$dir/laptop.out" '^control folder mounted' 30 $!
    mountpoint -q "$dir/mnt" || die "$dir/mnt is not mounted"
    deadline=$((SECONDS + 30))
    until "$bin" --data "$dir/laptop" status 2>/dev/null | grep -q "^$pi_id  *yes"; do
        [ "$SECONDS" -lt "$deadline" ] || die "the laptop did not connect to the mirror in 30 s"
        sleep 0.1
    done
}

# state_of FILE: sets STATE to the `state:` line of a control-folder entry, read with builtins
# only (no fork per poll, so polling does not steal the CPU the daemons need).
state_of() {
    local line
    STATE=""
    { while IFS= read -r line; do
        if [[ "$line" == state:* ]]; then STATE=${line#state: }; break; fi
    done <"$1"; } 2>/dev/null || true
}

# nap: a ~0.6 ms pause without a fork (a read with a time-out on a pipe nobody writes), so a
# poll neither misses much (resolution < 1 ms) nor spins a core that the daemons need (a
# spinning poll made every read a FUSE request to the laptop, back to back). nap_init opens
# that pipe; call it once, before sampling.
nap_init() { exec {NAP_FD}<> <(:); }
nap() { read -r -t 0.0005 -u "$NAP_FD" _ 2>/dev/null || true; }

# delivered_sample CREATE FILE SECONDS: creates control-folder entry FILE with `touch`
# (CREATE=touch) or the shell's own redirection (the same create(2), no process started),
# polls until it leaves `queued` (at most SECONDS), requires `delivered`, and prints the
# microseconds that took; then removes FILE and waits (as long) until it is gone.
delivered_sample() {
    local t0 t1 deadline
    t0=$EPOCHREALTIME
    if [ "$1" = touch ]; then touch "$2"; else : >"$2"; fi
    deadline=$((SECONDS + $3))
    while :; do
        state_of "$2"
        [[ -n "$STATE" && "$STATE" != queued ]] && break
        [ "$SECONDS" -lt "$deadline" ] || die "$2: still '$STATE' after $3 s"
        nap
    done
    t1=$EPOCHREALTIME
    [[ "$STATE" == delivered ]] || die "$2: went from queued to '$STATE', expected delivered"
    echo "$((${t1/./} - ${t0/./}))"
    rm "$2"
    deadline=$((SECONDS + $3))
    while [ -e "$2" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "$2: not removed after $3 s"
        sleep 0.01
    done
}
