#!/usr/bin/env bash
# Provisions one machine of the Vagrant cluster: an etcd member, fleetd and fleetctl.
# Usage: provision.sh NAME IP INITIAL_CLUSTER METADATA (the Vagrantfile passes them).
# Idempotent: `vagrant provision` runs it again safely.
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 NAME IP INITIAL_CLUSTER METADATA" >&2
  exit 2
fi
name=$1 ip=$2 initial_cluster=$3 metadata=$4

export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q "ok installed"; then
  apt-get update -qq
  # The example units in units/ run on these too (db, web, lb, helpers).
  apt-get install -y -qq --no-install-recommends etcd-server etcd-client \
    curl nginx-light python3 redis-server redis-tools
fi

# etcd: one member of a static 3-member cluster, clients on the machine's IP and loopback.
cat > /etc/default/etcd <<CONF
ETCD_NAME=$name
ETCD_DATA_DIR=/var/lib/etcd/$name
ETCD_LISTEN_PEER_URLS=http://$ip:2380
ETCD_LISTEN_CLIENT_URLS=http://$ip:2379,http://127.0.0.1:2379
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://$ip:2380
ETCD_ADVERTISE_CLIENT_URLS=http://$ip:2379
ETCD_INITIAL_CLUSTER=$initial_cluster
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=fleet-vagrant
# Tuned for fleet at scale (README, "Running etcd for a large fleet").
ETCD_BACKEND_BATCH_INTERVAL=10ms
GOGC=400
CONF
systemctl enable etcd.service
systemctl restart etcd.service

# fleet: binaries uploaded by the Vagrantfile, config with this machine's metadata.
install -m 0755 /tmp/fleetd /tmp/fleetctl /usr/local/bin/
mkdir -p /etc/fleet
cat > /etc/fleet/fleet.conf <<CONF
# Written by provision.sh for $name.
etcd_servers=http://127.0.0.1:2379
public_ip=$ip
metadata=$metadata
CONF
cat > /etc/systemd/system/fleet.service <<'UNIT'
[Unit]
Description=fleet daemon
After=etcd.service
Wants=etcd.service

[Service]
ExecStart=/usr/local/bin/fleetd
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable fleet.service
systemctl restart fleet.service
echo "$name: etcd and fleetd running (public_ip=$ip, metadata=$metadata)"
