#!/usr/bin/env bash
# Installs dat-mirror: builds it with the `dist` profile (LTO, one codegen unit, stripped),
# then installs the binary, the systemd units, shell completions and an example config.
#
#   scripts/install.sh                    # as root: into /usr/local, creates the system user
#   scripts/install.sh --dry-run          # show what would be done, change nothing
#   scripts/install.sh --prefix ~/.local  # as a user: binary in ~/.local/bin, user unit in
#                                         # ~/.local/share/systemd/user
#
# Options:
#   --prefix DIR        install under DIR (default /usr/local)
#   --dry-run           print every action, change nothing
#   --binary PATH       install this binary instead of building one
#   --files-only        only install files: no system user, no `systemctl daemon-reload`
#   --system-unit-dir DIR, --user-unit-dir DIR
#                       where the units go (defaults: PREFIX/lib/systemd/system and
#                       PREFIX/lib/systemd/user; ~/.local/share/systemd/user for PREFIX=~/.local)
#
# Running it again is safe: files that are already up to date are left alone ("unchanged").
# It never enables or starts a service; it prints the commands that do.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
dry_run=0
binary=
files_only=0
system_unit_dir=
user_unit_dir=

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --files-only) files_only=1; shift ;;
    --system-unit-dir) system_unit_dir=${2:?}; shift 2 ;;
    --system-unit-dir=*) system_unit_dir=${1#*=}; shift ;;
    --user-unit-dir) user_unit_dir=${2:?}; shift 2 ;;
    --user-unit-dir=*) user_unit_dir=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$prefix" in
  /*) ;;
  *) echo "install.sh: --prefix must be an absolute path, got $prefix" >&2; exit 2 ;;
esac
prefix=${prefix%/}
[[ -n "$prefix" ]] || prefix=/
bindir=$prefix/bin
system_unit_dir=${system_unit_dir:-$prefix/lib/systemd/system}
if [[ -z "$user_unit_dir" ]]; then
  if [[ -n "${HOME:-}" && "$prefix" == "$HOME/.local" ]]; then
    user_unit_dir=$HOME/.local/share/systemd/user
  else
    user_unit_dir=$prefix/lib/systemd/user
  fi
fi
docdir=$prefix/share/doc/dat-mirror
bridge_dir=$prefix/share/dat-mirror/hyperswarm-bridge

changed=0
say() { echo "$*"; }
run() { # run a command, or show it in a dry run
  if [[ $dry_run -eq 1 ]]; then say "would run: $*"; else "$@"; fi
}

# put SRC DEST MODE: installs SRC as DEST unless DEST already has the same content and mode.
put() {
  local src=$1 dest=$2 mode=$3
  if [[ -f "$dest" ]] && cmp -s "$src" "$dest" && [[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
    say "unchanged  $dest"
    return
  fi
  if [[ $dry_run -eq 1 ]]; then
    say "would install $dest"
  else
    install -D -m "$mode" "$src" "$dest"
    say "installed  $dest"
  fi
  changed=$((changed + 1))
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. The binary.
if [[ -z "$binary" ]]; then
  target_dir=${CARGO_TARGET_DIR:-target}
  if [[ $dry_run -eq 1 ]]; then
    say "would run: cargo build --locked --profile dist"
    binary=$target_dir/dist/dat-mirror
  else
    say "==> building (cargo build --locked --profile dist; a few minutes on a Raspberry Pi)"
    cargo build --locked --profile dist
    binary=$target_dir/dist/dat-mirror
  fi
fi
if [[ $dry_run -eq 0 && ! -x "$binary" ]]; then
  echo "install.sh: no executable at $binary" >&2
  exit 1
fi
if [[ -x "$binary" ]]; then
  put "$binary" "$bindir/dat-mirror" 0755
else
  say "would install $bindir/dat-mirror"
fi

# 2. systemd units, pointing at the installed binary and docs.
render_unit() { # SRC OUT
  sed -e "s|/usr/local/bin/dat-mirror|$bindir/dat-mirror|g" \
      -e "s|/usr/local/share/doc/dat-mirror|$docdir|g" \
      -e "s|/usr/local/share/dat-mirror/hyperswarm-bridge|$bridge_dir|g" "$1" > "$2"
}
render_unit dist/systemd/dat-mirror-serve.service "$tmp/dat-mirror-serve.service"
render_unit dist/systemd/dat-mirror-mount.service "$tmp/dat-mirror-mount.service"
put "$tmp/dat-mirror-serve.service" "$system_unit_dir/dat-mirror-serve.service" 0644
put "$tmp/dat-mirror-mount.service" "$user_unit_dir/dat-mirror-mount.service" 0644

# 2b. The hyperswarm bridge (the mirror's way onto the hypercore network: Node's hyperswarm in a
#     child process), with its pinned packages from the npm registry when npm is here.
for f in bridge.js package.json package-lock.json; do
  put "crates/hyperswarm-bridge/js/$f" "$bridge_dir/$f" 0644
done
if [[ $files_only -eq 0 ]] && command -v npm >/dev/null; then
  run npm ci --omit=dev --no-audit --no-fund --prefix "$bridge_dir"
else
  say "to join the hypercore network: install Node >= 18, then npm ci --omit=dev --prefix $bridge_dir"
fi

# 3. Shell completions, generated by the binary being installed.
if [[ -x "$binary" ]]; then
  "$binary" completions bash > "$tmp/dat-mirror.bash"
  "$binary" completions zsh > "$tmp/_dat-mirror"
  "$binary" completions fish > "$tmp/dat-mirror.fish"
  put "$tmp/dat-mirror.bash" "$prefix/share/bash-completion/completions/dat-mirror" 0644
  put "$tmp/_dat-mirror" "$prefix/share/zsh/site-functions/_dat-mirror" 0644
  put "$tmp/dat-mirror.fish" "$prefix/share/fish/vendor_completions.d/dat-mirror.fish" 0644
else
  say "would install shell completions under $prefix/share"
fi

# 4. Documentation and an example configuration.
put dist/config.example.toml "$docdir/config.example.toml" 0644
put README.md "$docdir/README.md" 0644

# 5. The system user of dat-mirror-serve.service (root only; not with --files-only).
if [[ $files_only -eq 0 && $(id -u) -eq 0 ]]; then
  if getent passwd dat-mirror >/dev/null; then
    say "unchanged  system user dat-mirror"
  else
    nologin=$(command -v nologin || echo /usr/sbin/nologin)
    run useradd --system --user-group --home-dir /var/lib/dat-mirror --no-create-home \
      --shell "$nologin" --comment "dat-mirror mirror daemon" dat-mirror
    [[ $dry_run -eq 1 ]] || say "created    system user dat-mirror"
    changed=$((changed + 1))
  fi
  if [[ $changed -gt 0 && -d /run/systemd/system ]]; then
    run systemctl daemon-reload
  fi
fi

if [[ $dry_run -eq 1 ]]; then
  say "dry run: nothing was changed"
  exit 0
fi
say "done: $changed changed"
cat <<EOF

Next steps
  mirror (as root):  put [serve] settings in /etc/dat-mirror/config.toml
                     (example: $docdir/config.example.toml), then
                     systemctl enable --now dat-mirror-serve
                     journalctl -u dat-mirror-serve | grep 'mirror key'
  laptop (as you):   put [mount] mirrors = ["<MIRROR_ID>@<IP>:7070"] in ~/.config/dat-mirror/config.toml, then
                     systemctl --user daemon-reload
                     systemctl --user enable --now dat-mirror-mount     # mounts ~/dat-mirror
EOF
