#!/usr/bin/env bash
# Every benchmark, one after the other (never two at once), and one table of the ratios they
# measured, each against its anchor from the same run (the shape of issue 13's table):
#   replicate.sh  touch -> mirrored of a 100 MiB site vs Node hyperdrive 13 replicating it
#   http.sh       10 KiB files (wrk) and one large file (curl) vs nginx
#   fuse.sh       cat of a large file through the site tree vs the plain file, warm and cold:
#                 passed through to its copy (the default) and read through the mirror
#   delivered.sh  touch -> `state: delivered` vs a raw iroh round trip
#   idle.sh       an idle mirror holding 100 sites vs one holding none
#   sites.sh      `ls -l` of a control folder with 1,000 sites vs tmpfs; mirror start with
#                 1,000 sites held, to serving HTTP
# Each script also runs alone and prints its own, more detailed table; their output is kept
# in the log folder this script names. Nothing leaves the machine (every script runs its
# daemons on 127.0.0.1 with mDNS, the DHT, relays and hyperswarm off).
#
# Usage: scripts/bench/all.sh [NAME...]     (NAME: replicate http fuse delivered idle sites;
#                                            default: all, in that order)
# Environment: BENCH_QUICK=1 runs every script with small sizes and short windows (a smoke
#              test of the whole set in a few minutes; its numbers are not the issue's
#              figures): a 64 MiB site (the smallest its file mix fits), a 64 MiB large
#              file, 5 s of wrk, 3 runs, 20 delivered samples, 20 idle sites over 10 s,
#              100 sites for the listing and start.
#              Any of the scripts' own knobs (BENCH_BIG_BYTES, BENCH_N, ...) set here win.
#              BENCH_LOGS=DIR keeps the scripts' output there (default: a new temp dir).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/scripts/bench
say() { printf '%s\n' "$*" >&2; }

ALL=(replicate http fuse delivered idle sites)
WANT=("$@")
[ ${#WANT[@]} -eq 0 ] && WANT=("${ALL[@]}")
for n in "${WANT[@]}"; do
    [ -f "$HERE/$n.sh" ] || { say "error: no benchmark '$n' (one of: ${ALL[*]})"; exit 2; }
done

QUICK=${BENCH_QUICK:-0}
LOGS=${BENCH_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-bench-all.XXXXXX")}
mkdir -p "$LOGS"
export BENCH_ROWS=$LOGS/rows.tsv
: >"$BENCH_ROWS"

# quick NAME VALUE: in quick mode, NAME defaults to VALUE (a value already set wins).
quick() { if [ "$QUICK" = 1 ] && [ -z "${!1:-}" ]; then export "$1=$2"; fi; }

# Each script runs in a subshell with its own knobs, so one script's size is not another's.
run() {
    local name=$1 t0=$SECONDS rc
    say "== $name.sh ($(date -u +%H:%M:%S)), output in $LOGS/$name.log"
    (
        case $name in
            replicate) quick BENCH_SITE_BYTES 67108864 ;;
            http) quick BENCH_BIG_BYTES 67108864; quick BENCH_DURATION 5 ;;
            fuse) quick BENCH_BYTES 67108864; quick BENCH_RUNS 3 ;;
            delivered) quick BENCH_N 20 ;;
            idle) quick BENCH_SITES 20; quick BENCH_IDLE_S 10; quick BENCH_SETTLE_S 3 ;;
            sites) quick BENCH_SITES 100; quick BENCH_RUNS 3 ;;
        esac
        "$HERE/$name.sh"
    ) >"$LOGS/$name.log" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then
        say "   $name.sh failed (exit $rc) after $((SECONDS - t0)) s; last lines:"
        tail -n 15 "$LOGS/$name.log" >&2
        printf '%s\t%s\t%s\t%s\t%s\n' "$name.sh" "FAILED (exit $rc)" "-" "-" "-" >>"$BENCH_ROWS"
        FAILED=1
    else
        say "   done in $((SECONDS - t0)) s"
    fi
}

FAILED=0
START=$(date -u +%Y-%m-%dT%H:%MZ)
for n in "${WANT[@]}"; do run "$n"; done

echo
echo "dat-mirror benchmarks — $START, $(nproc) cores, $(uname -r)$([ "$QUICK" = 1 ] && echo ", QUICK mode (small sizes)")"
echo "each ratio is against its anchor measured in the same run; the scripts' own tables: $LOGS/*.log"
awk -F'\t' '
    { for (i = 1; i <= 5; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
    END {
        split("path|ours|anchor|ratio|goal", h, "|")
        for (i = 1; i <= 5; i++) if (length(h[i]) > w[i]) w[i] = length(h[i])
        fmt = "| %-" w[1] "s | %-" w[2] "s | %-" w[3] "s | %-" w[4] "s | %-" w[5] "s |\n"
        printf fmt, h[1], h[2], h[3], h[4], h[5]
        sep = "|"
        for (i = 1; i <= 5; i++) { s = ""; for (j = 0; j < w[i] + 2; j++) s = s "-"; sep = sep s "|" }
        print sep
        for (r = 1; r <= NR; r++) printf fmt, c[r, 1], c[r, 2], c[r, 3], c[r, 4], c[r, 5]
    }' "$BENCH_ROWS"
exit "$FAILED"
