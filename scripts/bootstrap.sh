#!/usr/bin/env bash
# Installs what building and testing fleet needs on a Debian 12 machine (run as root):
# protoc (etcd-client's build), etcd (tests talk to a real one), and the container
# tooling of the lab (systemd-nspawn, debootstrap). Idempotent and quick when done.
set -euo pipefail
packages=(protobuf-compiler etcd-server etcd-client systemd-container debootstrap iproute2 dbus vagrant openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install packages (run with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "bootstrap: cargo not found (install Rust 1.95+ with rustup)" >&2; exit 1; }
