#!/usr/bin/env bash
# The one-command demo (run as root on a Debian 12 machine): builds fleet, boots a
# 3-machine lab (systemd-nspawn machines around a real etcd, fleetd in each), deploys the
# multi-tier stack of units/ (Redis db + helpers, web@01..10 + monweb@01..10, nginx lb),
# shows it answering through the load balancer, then kills the db's machine and shows
# db and helpers moving together, the web tier reconnecting and the lb following.
#
#   scripts/demo.sh           # tears the lab down at the end
#   scripts/demo.sh --keep    # leaves it running: source /run/fleet-lab/fleetdemo/env
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo: the lab needs root (run it as root, or with sudo)" >&2; exit 1; }
started=$(date +%s)
scripts/bootstrap.sh
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh
echo "== building fleetd, fleetctl, fleet-lab"
cargo build --locked -q -p fleetd -p fleetctl -p fleet-lab
bin=$PWD/target/debug
lab=fleetdemo
work=$(mktemp -d)
cleanup() {
  if [ "$keep" -eq 0 ]; then "$bin/fleet-lab" -n "$lab" down >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
"$bin/fleet-lab" -n "$lab" down >/dev/null 2>&1 || true
packages=$(grep -A20 'pub const STACK_PACKAGES' lab/src/config.rs | sed -n 's/^ *"\([^"]*\)",*/"\1"/p' | paste -sd, -)
cat >"$work/fleet-lab.toml" <<TOML
name = "$lab"
agent_ttl = "5s"

[[group]]
name = "node%d"
count = 3
packages = [$packages]

[group.metadata]
lab = "$lab"
TOML
echo "== booting a 3-machine lab (the first run builds the Debian image, about a minute)"
"$bin/fleet-lab" -c "$work/fleet-lab.toml" up
# shellcheck disable=SC1090
source "/run/fleet-lab/$lab/env"
fleetctl() { "$bin/fleetctl" "$@"; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

for _ in $(seq 100); do
  [ "$(fleetctl list-machines --no-legend 2>/dev/null | wc -l)" -ge 3 ] && break
  sleep 0.2
done
say fleetctl list-machines
fleetctl list-machines

cd units
say fleetctl start db.service dbhelper.service mondb.service
fleetctl start db.service dbhelper.service mondb.service
say fleetctl start web@{01..10}.service monweb@{01..10}.service
fleetctl start web@{01..10}.service monweb@{01..10}.service
say fleetctl start lb.service
fleetctl start lb.service
say fleetctl list-units
fleetctl list-units

# The machine column is id.../IP.
ip_of() { fleetctl list-units --no-legend --fields unit,machine | awk -v u="$1" '$1 == u { split($2, a, "/"); print a[2]; exit }'; }
node_of_ip() { "$bin/fleet-lab" -n "$lab" status | awk -v ip="$1" '$2 == ip { print $1; exit }'; }
ask_lb() {
  local lb n answers=0
  for _ in $(seq 150); do
    lb=$(ip_of lb.service)
    if [ -n "$lb" ] && curl -fsS -m 2 "http://$lb/" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  say "curl http://$lb/   (x$1)"
  for n in $(seq "$1"); do
    curl -fsS -m 2 "http://$lb/" && answers=$((answers + 1)) || echo "(no answer)"
    : "$n"
  done
  [ "$answers" -gt 0 ]
}
ask_lb 6

db_ip=$(ip_of db.service)
db_node=$(node_of_ip "$db_ip")
say "fleet-lab kill $db_node   # the db's machine ($db_ip) is lost"
killed=$(date +%s.%N)
"$bin/fleet-lab" -n "$lab" kill "$db_node"
for _ in $(seq 300); do
  new=$(ip_of db.service)
  if [ -n "$new" ] && [ "$new" != "$db_ip" ] &&
     fleetctl list-units --no-legend --fields unit,active | awk '$1 ~ /^(db|dbhelper|mondb)\.service$/ && $2 == "active"' | wc -l | grep -qx 3; then
    break
  fi
  sleep 0.2
done
recovered=$(date +%s.%N)
new_db=$(ip_of db.service)
printf '\ndb, dbhelper and mondb active on %s again %.1f s after the machine loss\n' "$new_db" "$(echo "$recovered - $killed" | bc)"
# The web tier re-reads the db's address every second: wait until ten answers in a row
# through the load balancer name the new db.
streak=0
for _ in $(seq 300); do
  lb=$(ip_of lb.service)
  if [ -n "$lb" ] && curl -fsS -m 2 "http://$lb/" 2>/dev/null | grep -q "db $new_db:"; then
    streak=$((streak + 1)); [ "$streak" -ge 10 ] && break
  else
    streak=0; sleep 0.2
  fi
done
reconnected=$(date +%s.%N)
printf 'web tier reading the new db through the load balancer %.1f s after the machine loss\n' "$(echo "$reconnected - $killed" | bc)"
say fleetctl list-units
fleetctl list-units
ask_lb 6
printf '\ndemo done in %d s\n' "$(( $(date +%s) - started ))"
if [ "$keep" -eq 1 ]; then
  echo "The lab is still running: source /run/fleet-lab/$lab/env; fleetctl list-units; fleet-lab -n $lab down when done."
fi
