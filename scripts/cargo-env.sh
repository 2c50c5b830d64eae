# Sourced by the scripts: puts cargo on PATH, also under sudo, whose secure_path drops
# ~/.cargo/bin. Looks in PATH, then root's rustup, then the invoking user's.
# shellcheck shell=bash
if ! command -v cargo >/dev/null 2>&1; then
  for home in "${HOME:-/root}" /root ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"}; do
    if [ -x "$home/.cargo/bin/cargo" ]; then
      export PATH="$home/.cargo/bin:$PATH"
      # rustup's proxies find the toolchain through RUSTUP_HOME; downloads stay in
      # root's own CARGO_HOME so the user's cache never gets root-owned files.
      [ -d "$home/.rustup" ] && export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
      break
    fi
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "cargo not found: install Rust 1.95+ with rustup (as root, or as the user who runs sudo)" >&2
  exit 1
}
