#!/usr/bin/env bash
# Installs everything building, testing and demonstrating fleet needs on a Debian 12
# machine that has only the Rust toolchain (run as root, or through sudo). Idempotent,
# and quick when nothing is missing. scripts/pristine-check.sh proves the list complete
# by running it in a freshly debootstrapped Debian.
#
#   protobuf-compiler, libprotobuf-dev  protoc and its well-known .proto includes (etcd-client)
#   gcc, libc6-dev                      the C compiler ring's build uses
#   ca-certificates                     cargo's downloads over HTTPS
#   etcd-server, etcd-client            tests talk to a real etcd
#   systemd, dbus                       the driver tests run a private `systemd --user`
#   systemd-container, debootstrap,
#   iproute2, procps, util-linux,
#   nftables                            the lab: nspawn machines, their image, netns,
#                                       packet loss and the latency relay's redirects
#   openssh-client, openssl             fleetctl ssh/--tunnel tests, test certificates
#   vagrant (with ruby)                 the Vagrantfile checks (no provider needed)
#   curl, bc                            the demo
set -euo pipefail
packages=(
  protobuf-compiler libprotobuf-dev gcc libc6-dev ca-certificates
  etcd-server etcd-client systemd dbus
  systemd-container debootstrap iproute2 procps util-linux nftables
  openssh-client openssl vagrant ruby curl bc
  # The web console's browser test (tests/tests/console.rs) drives headless
  # Chromium through chromedriver.
  chromium chromium-driver
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root to install packages (run as root or with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Recommends stay off: each package a test needs is named above.
  apt-get install -y -qq --no-install-recommends -- "${missing[@]}" >/dev/null
fi
# shellcheck source=scripts/cargo-env.sh
. "$(dirname "$0")/cargo-env.sh"
