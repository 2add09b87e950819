#!/usr/bin/env bash
# Hypercore-network read benchmark: the 100 MiB mixed site of replicate.sh (the same
# generator) fetched by a fresh Node hyperdrive 13 reader (corestore 7, Agregore's stack)
#   1. from a Node hyperdrive 13 seeder that imported the folder (localdrive.mirror), and
#   2. from the dat-mirror daemon alone: the mirror is asked for the seeder's key in the control
#      folder (`touch KEY`), fetches it over the HyperDHT, then the seeder (and the laptop) stop;
# both on the same local HyperDHT testnet (3 nodes on 127.0.0.1), the same drive, the same
# reader script. Every file the readers get is checked byte-identical against the folder
# (after the timed window). Prints both times and the ratio node/mirror (goal >= 1.0x), and
# touch -> mirrored from the Node seeder.
#
# Usage: scripts/bench/hyper-read.sh
# Environment: BENCH_TIMEOUT (s, default 600), BENCH_SITE_BYTES (default 104857600),
#              BENCH_KEEP=1 (keep the temp dir), TMPDIR.
# Needs: cargo, node + `npm ci --prefix scripts/bench/node` and the bridge's modules
#        (crates/hyperswarm-bridge/js), /dev/fuse (root, or fuse3 for fusermount3).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/hyper-common.sh"
SITE_BYTES=${BENCH_SITE_BYTES:-104857600}

build

say "== site: $SITE_BYTES bytes (replicate.sh's mix), in $WORK/site"
SITE=$WORK/site
"$EX/bench_inprocess" gen-site "$SITE" "$WORK/sizes.txt" "$SITE_BYTES"
NFILES=$(wc -l <"$WORK/sizes.txt")
sync

say "== local HyperDHT testnet"
start_testnet

say "== Node hyperdrive 13 seeder (imports the folder, announces it)"
start_node seed 8 seed "$BOOTSTRAP" "$SITE" "$WORK/seed"
SEED_PID=$NODE_PID
wait_for_line "$WORK/seed.out" '"ready"' "$TIMEOUT" "$SEED_PID"
KEY=$(sed -n 's/.*"key":"\([0-9a-f]\{64\}\)".*/\1/p' "$WORK/seed.out")
[ -n "$KEY" ] || die "the seeder printed no key"
say "   seeding hyper://$KEY"
sync

say "== 1. a fresh Node hyperdrive 13 reader fetches it from the Node seeder"
FROM_NODE=$(cd "$NODE_DIR" && timeout "$TIMEOUT" node hyper.js read "$BOOTSTRAP" "$KEY" "$WORK/r-node" "$SITE" 7>&- 8>&-) \
    || die "the reader of the Node seeder failed"
say "   $FROM_NODE"
[ "$(field peers "$FROM_NODE")" = 1 ] || die "the reader had $(field peers "$FROM_NODE") peers, expected the seeder alone"
rm -rf "$WORK/r-node"
sync

say "== 2. the mirror fetches it from the seeder (touch KEY in the laptop's control folder)"
LAPTOP_ID=$("$BIN" --data "$WORK/laptop" id)
PI_ID=$("$BIN" --data "$WORK/pi" id)
start_mirror "$WORK/pi" "$LAPTOP_ID"
start_laptop "$WORK/laptop" "$PI_ID"
T=$(now)
touch "$MNT/$KEY"
wait_mirrored "$KEY"
MIRRORED_S=$(since "$T")
say "   mirrored in $MIRRORED_S s"
for f in index.html posts/07/post-0700.html assets/img-17.jpg media/video-2.mp4; do
    curl -sf --max-time 60 "http://$HTTP/$KEY/$f" | cmp -s - "$SITE/$f" || die "$f over HTTP differs from the folder"
done
say "   the seeder and the laptop stop; the mirror alone holds the site"
stop_node "$SEED_PID" 8
kill -TERM "$LAPTOP_PID"
for i in $(seq 100); do kill -0 "$LAPTOP_PID" 2>/dev/null || break; sleep 0.05; done
fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || true
sync

say "== 3. a fresh Node hyperdrive 13 reader fetches it from the mirror alone"
FROM_MIRROR=$(cd "$NODE_DIR" && timeout "$TIMEOUT" node hyper.js read "$BOOTSTRAP" "$KEY" "$WORK/r-mirror" "$SITE" 7>&- 8>&-) \
    || die "the reader of the mirror failed"
say "   $FROM_MIRROR"
[ "$(field peers "$FROM_MIRROR")" = 1 ] || die "the reader had $(field peers "$FROM_MIRROR") peers, expected the mirror alone"
stop_daemons

# ---------------------------------------------------------------------------------------
row() { # label bytes secs blocks
    awk -v l="$1" -v n="$2" -v s="$3" -v b="$4" 'BEGIN {
        printf "%-52s %11d %9.3f %9.1f %9.0f\n", l, n, s, n / s / 1048576, b / s }'
}
NS=$(field secs "$FROM_NODE")
MS=$(field secs "$FROM_MIRROR")
echo
echo "dat-mirror hypercore-network read benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "site: $NFILES files, $SITE_BYTES bytes, one hyperdrive 13 drive ($(field blocks "$FROM_NODE") blocks); local HyperDHT testnet on 127.0.0.1"
printf '%-52s %11s %9s %9s %9s\n' "a fresh Node hyperdrive 13 reader fetches it" "bytes" "secs" "MiB/s" "blocks/s"
row "from a Node hyperdrive 13 seeder (anchor)" "$(field bytes "$FROM_NODE")" "$NS" "$(field blocks "$FROM_NODE")"
row "from the dat-mirror daemon alone" "$(field bytes "$FROM_MIRROR")" "$MS" "$(field blocks "$FROM_MIRROR")"
awk -v n="$NS" -v m="$MS" 'BEGIN { printf "ratio node/mirror: %.2fx (goal >= 1.0x: the mirror serves at least as fast as Node)\n", n / m }'
echo "touch -> mirrored (the mirror fetching it from the Node seeder over the HyperDHT): $MIRRORED_S s; both readers' files byte-identical to the folder"
