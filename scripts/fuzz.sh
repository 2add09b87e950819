#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a bounded time and prints a summary table.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Environment:
#   FUZZ_TARGETS="a b"      only these targets (default: every one in fuzz/fuzz_targets/)
#   FUZZ_SANITIZER=address  build with AddressSanitizer (needs RUSTC_BOOTSTRAP=1 on stable
#                           Rust, which this script sets; default: none, plain stable)
#   FUZZ_RSS_MB=1024        libFuzzer -rss_limit_mb
#   FUZZ_MALLOC_MB=128      largest single allocation, in MiB: libFuzzer -malloc_limit_mb
#                           (enforced by libFuzzer only under a sanitizer) and the limit of
#                           the targets' own allocator (always enforced), so an allocation
#                           sized by an unchecked length field is a crash
#   FUZZ_JOBS=1             parallel fuzzing processes per target (libFuzzer -fork)
#
# Corpora grow in fuzz/corpus/<target>/ (not committed), seeded from
# fuzz/regressions/<target>/ (committed, replayed by tests/fuzz_regressions.rs); crashes
# go to fuzz/artifacts/<target>/. When one is found: minimise it with
# `cargo fuzz tmin -s none -a <target> <file>` (in fuzz/), fix the decoder, and add the
# minimised file to fuzz/regressions/<target>/. Exits nonzero if any target crashed,
# ran out of memory, or hung. Not run in CI (too slow).
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
RSS_MB="${FUZZ_RSS_MB:-1024}"
MALLOC_MB="${FUZZ_MALLOC_MB:-128}"
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]  (a whole number of seconds, default 60)" >&2
    exit 2
fi

# cargo-fuzz drives the build (sancov instrumentation flags, libFuzzer linked in).
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
# libfuzzer-sys builds libFuzzer from C++ source.
if ! command -v c++ >/dev/null 2>&1; then
    echo "== installing a C++ compiler (libFuzzer is C++)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq g++
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq g++
    fi
fi

BUILD_FLAGS=(--sanitizer "$SANITIZER" --debug-assertions)
if [ "$SANITIZER" != none ]; then
    # Sanitizers are unstable rustc flags; stable Rust accepts them with this.
    export RUSTC_BOOTSTRAP=1
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <(ls fuzz/fuzz_targets | sed -n 's/\.rs$//p' | sort)
fi

echo "== building ${#TARGETS[@]} fuzz targets (sanitizer: $SANITIZER, debug assertions on)"
(cd fuzz && cargo fuzz build "${BUILD_FLAGS[@]}")
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="fuzz/target/$TRIPLE/release"

FORK=()
if [ "$JOBS" -gt 1 ]; then
    FORK=(-fork="$JOBS" -ignore_crashes=0)
fi
LOG_DIR="fuzz/logs"
mkdir -p "$LOG_DIR"
export DAT_MIRROR_FUZZ_MALLOC_LIMIT_MB="$MALLOC_MB"

count_files() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

ROWS=()
FAILED=0
for t in "${TARGETS[@]}"; do
    bin="$BIN_DIR/$t"
    [ -x "$bin" ] || { echo "no binary for target $t ($bin)" >&2; exit 2; }
    corpus="fuzz/corpus/$t"
    seeds="fuzz/regressions/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$seeds" "$artifacts"
    before_corpus=$(count_files "$corpus")
    before_crashes=$(count_files "$artifacts")
    log="$LOG_DIR/$t.log"
    echo "== $t: ${SECONDS_PER_TARGET}s"
    set +e
    # New inputs go to the first folder only: the committed seeds stay untouched.
    "$bin" "$corpus" "$seeds" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$RSS_MB" \
        -malloc_limit_mb="$MALLOC_MB" \
        -timeout=10 \
        "${FORK[@]}" \
        -artifact_prefix="$artifacts/" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ -z "$runs" ]; then # -fork prints no final stats: take the last status line
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
        speed=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    fi
    new_corpus=$(($(count_files "$corpus") - before_corpus))
    crashes=$(($(count_files "$artifacts") - before_crashes))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # died without an artifact (e.g. killed): still a failure
    fi
    status=ok
    if [ "$crashes" -gt 0 ]; then
        status="FAIL (see $log, $artifacts/)"
        FAILED=1
        grep -E '^==[0-9]*==? ?ERROR|^==ERROR|panicked at|^SUMMARY' "$log" | head -5 | sed 's/^/   /' || true
    fi
    ROWS+=("$(printf '%-18s %12s %9s %12s %8s  %s' "$t" "${runs:-?}" "${speed:-?}" "$new_corpus" "$crashes" "$status")")
done

echo
echo "== summary: ${SECONDS_PER_TARGET}s per target, -rss_limit_mb=$RSS_MB, -malloc_limit_mb=$MALLOC_MB, sanitizer $SANITIZER"
printf '%-18s %12s %9s %12s %8s  %s\n' TARGET RUNS EXEC/S NEW-CORPUS CRASHES STATUS
printf '%s\n' "${ROWS[@]}"
if [ "$FAILED" -ne 0 ]; then
    echo "some targets failed: minimise each artifact (cargo fuzz tmin), fix the decoder, add" \
        "the minimised input to fuzz/regressions/<target>/" >&2
    exit 1
fi
