#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of what fleet reads from outside:
# unit files, unit names, registry values, fleet.conf. Each target runs for a bounded
# time; the last line of each is libFuzzer's count of executions. A crash is saved under
# fuzz/artifacts/TARGET/ and reproduced with `scripts/fuzz.sh --repro TARGET FILE`.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 300 unit_file   # one target, 5 minutes
#
# Uses the stable toolchain (RUSTC_BOOTSTRAP lets cargo-fuzz pass its flags) without a
# sanitizer: Rust is memory safe here, what we hunt are panics and broken invariants.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
command -v c++ >/dev/null || { echo "fuzz: libFuzzer needs a C++ compiler: apt-get install g++" >&2; exit 1; }
if [ "${1:-}" = "--repro" ]; then
  [ $# -eq 3 ] || { echo "usage: scripts/fuzz.sh --repro TARGET FILE" >&2; exit 2; }
  exec cargo fuzz run --sanitizer none "$2" "$3"
fi
case "${1:-}" in -h|--help) sed -n '2,12p' "$0"; exit 0 ;; esac
secs=${1:-60}
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] && [ "$secs" -le 86400 ] ||
  { echo "fuzz: SECONDS must be 1..86400, not $secs" >&2; exit 2; }
shift || true
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
# Seeds: the example units and every unit name in them.
mkdir -p fuzz/corpus/unit_file fuzz/corpus/unit_name
cp units/*.service fuzz/corpus/unit_file/ 2>/dev/null || true
for f in units/*.service; do printf '%s' "$(basename "$f")" >"fuzz/corpus/unit_name/$(basename "$f")"; done
# Registry values: a directory byte (0 unit, 1 job, 2 machine, 3 schedule, 4 state,
# 5 unplaced), the key's tail, NUL, the value as fleetd stores it.
mkdir -p fuzz/corpus/registry_value fuzz/corpus/fleet_conf
h=0123456789abcdef0123456789abcdef01234567
printf '\0a.service\0{"text":"[Service]\\nExecStart=/bin/true\\n","hash":"%s"}' "$h" >fuzz/corpus/registry_value/unit
printf '\1a.service/target\0launched' >fuzz/corpus/registry_value/job
printf '\2m1\0{"id":"m1","public_ip":"10.0.0.1","metadata":{"region":"eu"},"version":"1","disable_engine":false,"api_addr":"10.0.0.1:4002"}' >fuzz/corpus/registry_value/machine
printf '\2m1/metadata/disk\0ssd' >fuzz/corpus/registry_value/metadata
printf '\3m1/a.service\0{"hash":"%s","target":"launched"}' "$h" >fuzz/corpus/registry_value/schedule
printf '\4a.service/m1\0{"hash":"%s","state":"launched","load":"loaded","active":"active","sub":"running"}' "$h" >fuzz/corpus/registry_value/state
printf '\5a.service\0no machine matches MachineMetadata' >fuzz/corpus/registry_value/unplaced
# fleet.conf: every option once.
printf '%s\n' 'etcd_servers=["http://10.0.0.1:2379","http://10.0.0.2:2379"]' \
  "etcd_key_prefix='/_coreos.com/fleet/'" 'etcd_request_timeout=1.5' 'public_ip=10.0.0.1' \
  'metadata="region=us-east, disk = ssd"' 'agent_ttl=30s # comment' 'disable_engine=true' \
  'engine_reconcile_interval=2' 'units_directory=/run/fleet/units' 'verbosity=1' \
  '; comment' 'systemd_user=false' 'token_limit=100' 'verify_units=true' \
  'api_listen=127.0.0.1:4002' 'long=\' 'value' >fuzz/corpus/fleet_conf/all
failed=0
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${secs}s"
  log=$(mktemp)
  if cargo fuzz run --sanitizer none "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    echo "   $t: $(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions, no failure"
  else
    failed=1
    echo "   $t: FAILED" >&2
    grep -E 'panicked|ERROR|artifact|Test unit written' "$log" | head -5 >&2
  fi
  rm -f "$log"
done
exit "$failed"
