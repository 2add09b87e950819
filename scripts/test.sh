#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests that mount real FUSE folders and open
# real connections on loopback. Installs what the tests need (fuse3) when run as root.
# With CI=true, tests that need FUSE fail instead of skipping when it is unavailable.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v fusermount3 >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "==> installing fuse3"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --all-targets --no-fail-fast "$@"
else
  exec cargo test --all-targets --no-fail-fast "$@"
fi
