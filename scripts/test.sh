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

# Node packages for tests/hyperdrive_interop.rs, pinned in tests/interop/package-lock.json:
# installed once per lock file (a stamp in node_modules records which). Without node/npm, or
# without the npm registry, that test says so and skips (fails with CI=true).
if ! command -v npm >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "==> installing nodejs and npm"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null \
    || echo "warning: could not install nodejs/npm" >&2
fi
if command -v npm >/dev/null; then
  lock_sum=$(sha256sum tests/interop/package-lock.json | cut -d' ' -f1)
  stamp=tests/interop/node_modules/.dat-mirror-installed
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]]; then
    echo "==> npm ci (tests/interop)"
    if (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error); then
      printf '%s' "$lock_sum" > "$stamp"
    else
      echo "warning: npm ci failed; tests/hyperdrive_interop.rs will retry, then skip (or fail with CI=true)" >&2
    fi
  fi
else
  echo "warning: node/npm not found: the hyperdrive interop tests will be SKIPPED (with CI=true they fail)" >&2
fi

# Node packages for crates/hypercore-wire's interop tests (protomux, compact-encoding,
# hypercore 11), pinned in crates/hypercore-wire/tests/node/package-lock.json: installed once
# per lock file. Without them those tests install them themselves or skip (fail with CI=true).
if command -v npm >/dev/null; then
  wire_dir=crates/hypercore-wire/tests/node
  wire_sum=$(sha256sum "$wire_dir/package-lock.json" | cut -d' ' -f1)
  wire_stamp=$wire_dir/node_modules/.dat-mirror-installed
  if [[ "$(cat "$wire_stamp" 2>/dev/null)" != "$wire_sum" ]]; then
    echo "==> npm ci ($wire_dir)"
    if (cd "$wire_dir" && npm ci --no-audit --no-fund --loglevel=error); then
      printf '%s' "$wire_sum" > "$wire_stamp"
    else
      echo "warning: npm ci failed in $wire_dir; the hypercore-wire interop tests will retry, then skip (or fail with CI=true)" >&2
    fi
  fi
fi

# iroh's relay server, for the relay test in tests/discovery.rs (with CI=true it fails without).
if ! command -v iroh-relay >/dev/null && [[ ! -x "$HOME/.cargo/bin/iroh-relay" ]]; then
  echo "==> cargo install iroh-relay (relay server for tests/discovery.rs)"
  cargo install --locked iroh-relay --version =1.4.1 --features server \
    || echo "warning: could not install iroh-relay: the relay test will be SKIPPED (fails with CI=true)" >&2
fi

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --all-targets --no-fail-fast "$@"
else
  exec cargo test --all-targets --no-fail-fast "$@"
fi
