#!/usr/bin/env bash
# The registry demo: a real etcd on a free port, fleetctl submitting, starting, listing
# and catting units through it. (Nothing runs the units until fleetd exists.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
cargo build --locked -q -p fleetctl
fleetctl=$PWD/target/debug/fleetctl
work=$(mktemp -d)
etcd_pid=""
cleanup() {
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
peer=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "demo=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 50); do
  "$fleetctl" --endpoint "http://127.0.0.1:$port" --driver etcd list-machines >/dev/null 2>&1 && break
  sleep 0.2
done
export FLEETCTL_ENDPOINT="http://127.0.0.1:$port" FLEETCTL_DRIVER=etcd
run() { printf '\n$ fleetctl %s\n' "$*"; "$fleetctl" "$@"; }
cd units
run submit hello.service global.service
run submit hello@1.service hello@2.service hello@3.service
run start --no-block hello.service
run list-unit-files
run cat hello@2.service
run list-machines
run destroy hello@3.service
run list-unit-files --fields unit,dstate,desc
