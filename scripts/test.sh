#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that mount real FUSE folders and open
# real connections on loopback. Installs what the tests need (fuse3, systemd's
# systemd-analyze, chromium, node/npm packages) when run as root.
# With CI=true, tests that need FUSE fail instead of skipping when it is unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."

# fuse3 (fusermount3) for the FUSE tests, systemd (systemd-analyze) to verify the units;
# iproute2 (ip netns, tc), iptables, util-linux (nsenter) and kmod (modprobe sch_netem) for
# the network-namespace tests (fault_link, discovery). Tests that start dat-mirror processes
# switch discovery off (DAT_MIRROR_NETWORK_*): nothing they do leaves this machine.
pkgs=()
command -v fusermount3 >/dev/null || pkgs+=(fuse3)
command -v systemd-analyze >/dev/null || pkgs+=(systemd)
command -v ip >/dev/null || pkgs+=(iproute2)
command -v iptables >/dev/null || pkgs+=(iptables)
command -v nsenter >/dev/null || pkgs+=(util-linux)
command -v modprobe >/dev/null || pkgs+=(kmod)
# headless Chromium for tests/browser.rs (origin isolation, the status page's screenshot)
command -v chromium >/dev/null || pkgs+=(chromium)
if ((${#pkgs[@]})) && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "==> installing ${pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# tc netem for the loss/delay test; without it (a kernel built without sch_netem) that test
# impairs the link with a userspace relay instead, and says so.
if [[ $(id -u) -eq 0 ]] && command -v modprobe >/dev/null; then
  modprobe sch_netem 2>/dev/null || echo "note: no sch_netem module: the loss/delay fault test uses its userspace relay" >&2
fi

# Node: the test peers written by others (hypercore, hyperdrive, hyperswarm, …) and the
# hyperswarm bridge. Each folder below pins its packages in a package-lock.json and is
# installed once per lock file (a stamp in node_modules records which), from the npm registry
# only. Without node/npm or the registry, the tests that need them say so and skip (with
# CI=true they fail).
if ! command -v npm >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "==> installing nodejs and npm"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null \
    || echo "warning: could not install nodejs/npm" >&2
fi
npm_ci_pinned() { # DIR WHAT-NEEDS-IT
  local dir=$1 what=$2 sum stamp
  sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  stamp=$dir/node_modules/.dat-mirror-installed
  [[ "$(cat "$stamp" 2>/dev/null)" == "$sum" ]] && return 0
  echo "==> npm ci ($dir)"
  if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
    printf '%s' "$sum" > "$stamp"
  else
    echo "warning: npm ci failed in $dir: $what will skip (or fail with CI=true)" >&2
  fi
}
if command -v npm >/dev/null; then
  npm_ci_pinned tests/interop "tests/hyperdrive_interop.rs"
  npm_ci_pinned crates/hypercore-wire/tests/node "the hypercore-wire interop tests"
  npm_ci_pinned crates/hyperswarm-bridge/js "the hyperswarm bridge and its tests"
  npm_ci_pinned crates/hypercore-peer/tests/node/v11 "the hypercore-peer Node tests (hyperdrive 11)"
  npm_ci_pinned crates/hypercore-peer/tests/node/v13 "the hypercore-peer Node tests (hyperdrive 13)"
  for extra in crates/*/tests/node; do
    [[ -f $extra/package-lock.json && $extra != crates/hypercore-wire/tests/node ]] &&
      npm_ci_pinned "$extra" "the tests of ${extra%/tests/node}"
  done
else
  echo "warning: node/npm not found: the Node interop tests will be SKIPPED (with CI=true they fail)" >&2
fi

# iroh's relay server, for the relay test in tests/discovery.rs (with CI=true it fails without).
if ! command -v iroh-relay >/dev/null && [[ ! -x "$HOME/.cargo/bin/iroh-relay" ]]; then
  echo "==> cargo install iroh-relay (relay server for tests/discovery.rs)"
  cargo install --locked iroh-relay --version =1.4.1 --features server \
    || echo "warning: could not install iroh-relay: the relay test will be SKIPPED (fails with CI=true)" >&2
fi

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  exec cargo test --workspace --all-targets --no-fail-fast "$@"
fi
