#!/usr/bin/env bash
# dat-mirror demo, on one machine: a mirror ("the Pi") and a laptop side on loopback.
# Installs what is missing (fuse3, curl), builds, starts both sides, publishes a sample
# site, `touch`es its key in the control folder, waits until the mirror has it, fetches it
# over HTTP, prints the URL and the status, and cleans up.
#
#   scripts/demo.sh            # run the demo and clean up
#   KEEP=1 scripts/demo.sh     # ...and keep it running until Ctrl-C, to play with the folder
#
# Ports: DEMO_PEER_PORT (default 7471, UDP) and DEMO_HTTP_PORT (default 8471, TCP).
set -euo pipefail
# Nothing may leave this machine: mDNS, the DHT and relays off (peers meet on 127.0.0.1).
export DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

install_missing() {
  local pkgs=()
  command -v fusermount3 >/dev/null || pkgs+=(fuse3)
  command -v curl >/dev/null || pkgs+=(curl)
  if ((${#pkgs[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "please install: ${pkgs[*]} (e.g. sudo apt-get install -y ${pkgs[*]})" >&2
      exit 1
    fi
    say "installing ${pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  if ! [[ -r /dev/fuse && -w /dev/fuse ]]; then
    echo "/dev/fuse is not usable here: load the fuse module (modprobe fuse) or run with --device /dev/fuse" >&2
    exit 1
  fi
}

install_missing
say "building dat-mirror (release)"
cargo build --release --quiet --bin dat-mirror
BIN=$PWD/target/release/dat-mirror

WORK=$(mktemp -d /tmp/dat-mirror-demo.XXXXXX)
PEER_PORT=${DEMO_PEER_PORT:-7471}
HTTP_PORT=${DEMO_HTTP_PORT:-8471}
MNT=$WORK/dat-mirror
SITES=$WORK/mirrored-sites
PIDS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  for m in "$MNT" "$SITES"; do
    mountpoint -q "$m" 2>/dev/null && (fusermount3 -u "$m" 2>/dev/null || umount -l "$m")
  done
  if [[ -z ${KEEP_WORK:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

LAPTOP_ID=$("$BIN" --data "$WORK/laptop" id)
MIRROR_ID=$("$BIN" --data "$WORK/pi" id)
say "mirror $MIRROR_ID"
say "laptop $LAPTOP_ID"

say "starting the mirror: serve --listen 127.0.0.1:$PEER_PORT --http 127.0.0.1:$HTTP_PORT --mount $SITES"
"$BIN" --data "$WORK/pi" serve --listen "127.0.0.1:$PEER_PORT" --http "127.0.0.1:$HTTP_PORT" \
  --mount "$SITES" >"$WORK/pi.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -S "$WORK/pi/control.sock" ]] && break; sleep 0.1; done

say "the mirror makes a one-time invite: dat-mirror invite"
CODE=$("$BIN" --data "$WORK/pi" invite 2>/dev/null) || { echo "invite failed; mirror log:"; cat "$WORK/pi.log"; exit 1; }
echo "    $CODE"
say "the laptop pairs with it: dat-mirror pair <code>"
"$BIN" --data "$WORK/laptop" pair "$CODE" || { echo "pairing failed; mirror log:"; cat "$WORK/pi.log"; exit 1; }

say "starting the laptop side: mount $MNT (the paired mirror is remembered)"
"$BIN" --data "$WORK/laptop" mount "$MNT" >"$WORK/laptop.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { echo "the control folder did not mount; log:"; cat "$WORK/laptop.log"; exit 1; }

say "writing a sample site"
SITE=$WORK/site
mkdir -p "$SITE/css" "$SITE/posts"
cat >"$SITE/index.html" <<'HTML'
<!doctype html><meta charset="utf-8"><link rel="stylesheet" href="css/site.css">
<h1>My peer-to-peer site</h1><p>Served by dat-mirror while my laptop sleeps.</p>
<p><a href="posts/">posts</a></p>
HTML
echo 'body { font-family: sans-serif; max-width: 40em; margin: auto }' >"$SITE/css/site.css"
echo '<h1>Hello, world</h1>' >"$SITE/posts/hello.html"
head -c 1048576 /dev/urandom >"$SITE/posts/photo.bin"

say "publishing it"
LINK=$("$BIN" --data "$WORK/laptop" publish "$SITE")
KEY=${LINK#hyper://}
echo "$LINK"

say "touch $MNT/$KEY"
touch "$MNT/$KEY"
last=""
for _ in $(seq 600); do
  state=$(sed -n 's/^state: //p' "$MNT/$KEY")
  [[ $state != "$last" ]] && echo "   state: $state" && last=$state
  [[ $state == mirrored* ]] && break
  sleep 0.1
done
[[ $last == mirrored* ]] || { echo "not mirrored within 60 s; logs:"; tail -20 "$WORK/pi.log" "$WORK/laptop.log"; exit 1; }

URL="http://127.0.0.1:$HTTP_PORT/$KEY/"
say "fetching $URL"
curl -fsS "$URL"
for f in index.html css/site.css posts/hello.html posts/photo.bin; do
  curl -fsS "$URL$f" | cmp -s - "$SITE/$f" || { echo "$f differs over HTTP"; exit 1; }
done
echo "all files byte-identical over HTTP"

say "ls -l $MNT"
ls -l "$MNT"
say "cat $MNT/$KEY"
cat "$MNT/$KEY"
say "cat $MNT/STATUS"
cat "$MNT/STATUS"
say "the mirror's read-only tree: ls -R $SITES/$KEY"
for _ in $(seq 100); do [[ -f $SITES/$KEY/index.html ]] && break; sleep 0.1; done
ls -R "$SITES/$KEY"
cmp -s "$SITES/$KEY/posts/photo.bin" "$SITE/posts/photo.bin" && echo "files in the tree are byte-identical"
say "the site is at $URL"

if [[ -n ${KEEP:-} ]]; then
  say "running; the control folder is $MNT — Ctrl-C to stop"
  wait "${PIDS[0]}" || true
fi
