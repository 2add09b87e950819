#!/usr/bin/env bash
# Soak test (not run in CI): a mirror (`dat-mirror serve`) and a laptop (`dat-mirror mount`)
# on this machine, on loopback, for SOAK_MINUTES (default 30). A fixed pool of sites is
# published on the laptop; round after round one of them gets a new version, is mirrored
# (`touch` in the control folder) if it is not, fetched over HTTP until the new version is
# served, and sometimes unmirrored (`rm`) until the mirror has dropped it. The pool is fixed
# so memory that grows over the run is a leak, not more sites.
#
# Every 30 s the resident memory (VmRSS from /proc/PID/status) of both processes goes into
# a CSV. At the end it prints RSS at start and end, their ratio, and the operations done,
# and checks that the laptop appended exactly one `Mirror` per `touch` and one `Unmirror`
# per `rm` (its log says each). Exits nonzero if either process died, a `touch` failed
# (issue 14 item 2: a touch right after an rm must work), a round timed out, or the
# laptop appended a command no round asked for.
#
# Needs FUSE (root, or fusermount3), curl. Settings (environment):
#   SOAK_MINUTES  run time in minutes (default 30)
#   SOAK_SITES    size of the site pool (default 6)
#   SOAK_OUT      folder for the CSV and the logs (default: a new temporary folder)
#   DAT_MIRROR_BIN  the binary to run (default: build with `cargo build --release` and use it;
#                   SOAK_PROFILE=dev uses target/debug instead)
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${SOAK_MINUTES:-30}
pool=${SOAK_SITES:-6}
out=${SOAK_OUT:-$(mktemp -d /tmp/dat-mirror-soak.XXXXXX)}
mkdir -p "$out"
if [[ -z "${DAT_MIRROR_BIN:-}" ]]; then
  if [[ "${SOAK_PROFILE:-release}" == dev ]]; then
    cargo build --quiet --bin dat-mirror
    DAT_MIRROR_BIN=$PWD/target/debug/dat-mirror
  else
    cargo build --quiet --release --bin dat-mirror
    DAT_MIRROR_BIN=$PWD/target/release/dat-mirror
  fi
fi
bin=$DAT_MIRROR_BIN
command -v curl >/dev/null || { echo "soak: curl is needed" >&2; exit 2; }

work=$(mktemp -d /tmp/dat-mirror-soak-data.XXXXXX)
pi=$work/pi lap=$work/lap mnt=$work/mnt sites=$work/sites
mkdir -p "$mnt" "$sites"
export HOME=$work/home DAT_MIRROR_NETWORK_MDNS=false DAT_MIRROR_NETWORK_DHT=false DAT_MIRROR_NETWORK_RELAY=off DAT_MIRROR_NETWORK_HYPERSWARM=false
export RUST_LOG=${RUST_LOG:-dat_mirror=info,warn}
unset DAT_MIRROR_DATA DAT_MIRROR_CONFIG XDG_CONFIG_HOME
mkdir -p "$HOME"

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port DGRAM) http_port=$(free_port STREAM)
http=http://127.0.0.1:$http_port

mirror_pid= laptop_pid=
cleanup() {
  [[ -n $laptop_pid ]] && kill "$laptop_pid" 2>/dev/null && wait "$laptop_pid" 2>/dev/null || true
  [[ -n $mirror_pid ]] && kill "$mirror_pid" 2>/dev/null && wait "$mirror_pid" 2>/dev/null || true
  umount -l "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

laptop_id=$("$bin" --data "$lap" id)
mirror_id=$("$bin" --data "$pi" id)
"$bin" --data "$pi" serve --listen "127.0.0.1:$port" --http "127.0.0.1:$http_port" \
  --allow "$laptop_id" >"$out/mirror.log" 2>&1 &
mirror_pid=$!
"$bin" --data "$lap" mount "$mnt" --mirror "$mirror_id@127.0.0.1:$port" >"$out/laptop.log" 2>&1 &
laptop_pid=$!

# wait_until SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    alive || return 1
    sleep 0.2
  done
}
alive() {
  kill -0 "$mirror_pid" 2>/dev/null || { echo "soak: the MIRROR DIED; see $out/mirror.log" >&2; return 1; }
  kill -0 "$laptop_pid" 2>/dev/null || { echo "soak: the LAPTOP DIED; see $out/laptop.log" >&2; return 1; }
}
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

wait_until 60 grep -q "control folder mounted at" "$out/laptop.log" || { echo "soak: the laptop did not mount" >&2; exit 1; }
wait_until 60 curl -fsS -o /dev/null "$http/.well-known/dat-mirror" || { echo "soak: the mirror did not start" >&2; exit 1; }

# The pool: each site a folder with an index naming its version and a data file.
write_site() { # write_site N ROUND
  local d=$sites/s$1
  mkdir -p "$d/data"
  printf '<h1>site %s round %s</h1>\n' "$1" "$2" >"$d/index.html"
  head -c $(( (RANDOM % 64 + 1) * 4096 )) /dev/urandom >"$d/data/blob.bin"
}
declare -a keys mirrored
for ((n = 0; n < pool; n++)); do
  write_site "$n" 0
  keys[n]=$("$bin" --data "$lap" publish "$sites/s$n" 2>/dev/null | sed 's|^hyper://||')
  mirrored[n]=0
done

csv=$out/rss.csv
echo "elapsed_s,mirror_rss_kb,laptop_rss_kb,rounds,publishes,mirrors,unmirrors,fetches" >"$csv"
rounds=0 publishes=$pool mirrors=0 unmirrors=0 fetches=0 touch_errors=0
sample() {
  echo "$((SECONDS - start)),$(rss "$mirror_pid"),$(rss "$laptop_pid"),$rounds,$publishes,$mirrors,$unmirrors,$fetches" >>"$csv"
}
serves() { curl -fsS "$http/$1/index.html" 2>/dev/null | grep -q "round $2<"; }
dropped() { ! curl -fsS "$http/.well-known/dat-mirror" | grep -q "\"$1\""; }

start=$SECONDS
end=$((start + minutes * 60))
next_sample=$start
first_mirror_rss= first_laptop_rss=
echo "soak: $minutes min, $pool sites, binary $bin, output in $out"
while ((SECONDS < end)); do
  if ((SECONDS >= next_sample)); then
    sample
    [[ -n $first_mirror_rss ]] || { first_mirror_rss=$(rss "$mirror_pid"); first_laptop_rss=$(rss "$laptop_pid"); }
    next_sample=$((next_sample + 30))
  fi
  rounds=$((rounds + 1))
  n=$((RANDOM % pool)) key=${keys[n]}
  write_site "$n" "$rounds"
  "$bin" --data "$lap" publish "$sites/s$n" --key "$key" >/dev/null 2>&1 || { echo "soak: publish failed in round $rounds" >&2; exit 1; }
  publishes=$((publishes + 1))
  if ((mirrored[n] == 0)); then
    # The site may still show `removing` (the mirror's acknowledgement of the last `rm` on
    # its way): touching it must append `Mirror` and succeed all the same.
    if ! touch "$mnt/$key" 2>>"$out/touch-errors.log"; then
      touch_errors=$((touch_errors + 1))
      echo "soak: round $rounds: touch $key failed: $(tail -n 1 "$out/touch-errors.log"); see $out/laptop.log" >&2
      exit 1
    fi
    mirrored[n]=1 mirrors=$((mirrors + 1))
  fi
  wait_until 120 serves "$key" "$rounds" || { echo "soak: round $rounds: $key not served within 120 s" >&2; exit 1; }
  fetches=$((fetches + 1))
  if ((RANDOM % 3 == 0)); then
    rm "$mnt/$key"
    mirrored[n]=0 unmirrors=$((unmirrors + 1))
    wait_until 120 dropped "$key" || { echo "soak: round $rounds: $key not dropped within 120 s" >&2; exit 1; }
  fi
done
sample
alive
# Every command the laptop appended came from a touch or an rm of this script.
appended_mirror=$(grep -c 'dat-mirror folder: appended Mirror' "$out/laptop.log" || true)
appended_unmirror=$(grep -c 'dat-mirror folder: appended Unmirror' "$out/laptop.log" || true)
if ((appended_mirror != mirrors || appended_unmirror != unmirrors)); then
  echo "soak: the laptop appended $appended_mirror Mirror and $appended_unmirror Unmirror commands" \
    "for $mirrors touches and $unmirrors rms; see $out/laptop.log" >&2
  exit 1
fi
last_mirror_rss=$(rss "$mirror_pid") last_laptop_rss=$(rss "$laptop_pid")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }'; }
echo "soak: done after $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s: $rounds rounds," \
  "$publishes publishes, $mirrors mirrors, $unmirrors unmirrors, $fetches HTTP fetches of a new version; the command log holds exactly those commands"
echo "soak: mirror RSS ${first_mirror_rss} kB -> ${last_mirror_rss} kB (x$(ratio "$first_mirror_rss" "$last_mirror_rss"))"
echo "soak: laptop RSS ${first_laptop_rss} kB -> ${last_laptop_rss} kB (x$(ratio "$first_laptop_rss" "$last_laptop_rss"))"
echo "soak: samples in $csv"
