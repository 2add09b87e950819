#!/usr/bin/env bash
# HTTP gateway benchmark, against nginx serving the same files from disk, in the same run:
#   - 10 KiB files: requests/s with wrk (rotating over 200 files), dat-mirror vs nginx;
#   - a large file (1 GiB by default): MiB/s of a full GET with curl, dat-mirror vs nginx.
# A laptop side publishes the site, the mirror mirrors it (via `touch` in the control
# folder), then both servers are measured on 127.0.0.1. Installs wrk, nginx, curl if missing.
#
# Environment: BENCH_BIG_BYTES (default 1073741824), BENCH_DURATION (wrk seconds, default 10),
#              BENCH_TIMEOUT (s to wait for mirroring, default 1800), BENCH_KEEP=1,
#              BENCH_BIN (a dat-mirror binary to use instead of building one).
set -euo pipefail
# Nothing may leave this machine: mDNS, the DHT and relays off (peers meet on 127.0.0.1).
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIG=${BENCH_BIG_BYTES:-1073741824}
DURATION=${BENCH_DURATION:-10}
TIMEOUT=${BENCH_TIMEOUT:-1800}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
say() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# One row for scripts/bench/all.sh's table when BENCH_ROWS names a file (tab-separated:
# path, ours, anchor, ratio, goal); nothing otherwise.
bench_row() { if [ -n "${BENCH_ROWS:-}" ]; then printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$BENCH_ROWS"; fi; }

missing=()
for c in wrk nginx curl fusermount3; do command -v "$c" >/dev/null || missing+=("$c"); done
if ((${#missing[@]})); then
  pkgs=("${missing[@]/fusermount3/fuse3}")
  [ "$(id -u)" -eq 0 ] || die "install: ${pkgs[*]}"
  say "installing ${pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

say "build (release)"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN # a given build (e.g. an older one, to compare)
else
  (cd "$ROOT" && cargo build --release --quiet --bin dat-mirror)
  BIN=$TARGET/release/dat-mirror
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dat-mirror-http-bench.XXXXXX")
MNT=$WORK/mnt
chmod 755 "$WORK" # nginx workers read the site from here
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
  if [ "$rc" -ne 0 ]; then tail -n 20 "$WORK"/*.log >&2 2>/dev/null; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket,"SOCK_"+sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
PEER=$(free_port DGRAM); HTTP=$(free_port STREAM); NGINX=$(free_port STREAM)

say "site: 200 files of 10 KiB + one file of $BIG bytes"
SITE=$WORK/site
mkdir -p "$SITE/small"
for i in $(seq 0 199); do head -c 10240 /dev/urandom >"$SITE/small/f$i.html"; done
head -c "$BIG" /dev/urandom >"$SITE/big.bin"

LAPTOP=$("$BIN" --data "$WORK/laptop" id)
MIRROR=$("$BIN" --data "$WORK/pi" id)
"$BIN" --data "$WORK/pi" serve --listen "127.0.0.1:$PEER" --http "127.0.0.1:$HTTP" --allow "$LAPTOP" >"$WORK/pi.log" 2>&1 &
PIDS+=($!)
"$BIN" --data "$WORK/laptop" mount "$MNT" --mirror "$MIRROR@127.0.0.1:$PEER" >"$WORK/laptop.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
mountpoint -q "$MNT" || die "control folder not mounted"
say "publish"
KEY=$("$BIN" --data "$WORK/laptop" publish "$SITE" 2>>"$WORK/publish.log")
KEY=${KEY#hyper://}
touch "$MNT/$KEY"
say "waiting until mirrored (at most $TIMEOUT s)"
deadline=$((SECONDS + TIMEOUT))
until grep -q '^state: mirrored' "$MNT/$KEY"; do
  [ "$SECONDS" -lt "$deadline" ] || die "not mirrored after $TIMEOUT s"
  sleep 0.5
done
BASE="http://127.0.0.1:$HTTP/$KEY"
curl -fsS "$BASE/small/f7.html" | cmp -s - "$SITE/small/f7.html" || die "HTTP content differs"

cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$NGINX; root $SITE; }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$NGINX/small/f0.html" 2>/dev/null && break; sleep 0.05; done

cat >"$WORK/rotate.lua" <<'LUA'
local i = 0
request = function()
  i = (i + 1) % 200
  return wrk.format("GET", wrk.path .. "f" .. i .. ".html")
end
LUA
rps() { wrk -t2 -c32 -d"${DURATION}s" -s "$WORK/rotate.lua" "$1" | awk '/^Requests\/sec/ {print $2}'; }
mibs() { # best of 3 full GETs
  local best=0 s
  for _ in 1 2 3; do
    s=$(curl -fsS -o /dev/null -w '%{speed_download}' "$1")
    best=$(awk -v a="$best" -v b="$s" 'BEGIN { print (b > a ? b : a) }')
  done
  awk -v b="$best" 'BEGIN { printf "%.1f", b / 1048576 }'
}

say "10 KiB files, wrk -t2 -c32 -d${DURATION}s"
DM_RPS=$(rps "$BASE/small/")
NG_RPS=$(rps "http://127.0.0.1:$NGINX/small/")
say "large file, curl (best of 3)"
DM_MIBS=$(mibs "$BASE/big.bin")
NG_MIBS=$(mibs "http://127.0.0.1:$NGINX/big.bin")

printf '\n%-34s %14s %14s %10s\n' "what" "dat-mirror" "nginx" "ratio"
printf '%-34s %14s %14s %9.2fx\n' "10 KiB files (req/s)" "$DM_RPS" "$NG_RPS" "$(awk -v a="$DM_RPS" -v b="$NG_RPS" 'BEGIN{print a/b}')"
printf '%-34s %14s %14s %9.2fx\n' "$((BIG / 1048576)) MiB file (MiB/s)" "$DM_MIBS" "$NG_MIBS" "$(awk -v a="$DM_MIBS" -v b="$NG_MIBS" 'BEGIN{print a/b}')"
bench_row "HTTP, 200 x 10 KiB files, wrk -t2 -c32" "$DM_RPS req/s" "nginx $NG_RPS req/s" \
    "$(awk -v a="$DM_RPS" -v b="$NG_RPS" 'BEGIN { printf "%.2fx", a / b }')" ">= 0.9x"
bench_row "HTTP, one $((BIG / 1048576)) MiB file, curl" "$DM_MIBS MiB/s" "nginx $NG_MIBS MiB/s" \
    "$(awk -v a="$DM_MIBS" -v b="$NG_MIBS" 'BEGIN { printf "%.2fx", a / b }')" ">= 0.95x"
