#!/usr/bin/env bash
# The fresh-machine check: proves scripts/bootstrap.sh installs everything the build and
# the tests need. Boots a throwaway container from a freshly debootstrapped minimal
# Debian 12 that has nothing but the Rust toolchain (the host's, bind-mounted read-only)
# and this checkout, and inside it runs scripts/bootstrap.sh, builds the whole workspace
# from an empty target directory, and runs the tests that need neither root nor a lab
# (unit tests, the etcd-backed registry tests, the Vagrant and example-unit tests).
# Prints how long each step took. Run as root; CI runs it after the test suite.
#
# Only the pristine tree is cached (/var/cache/fleet-pristine/), never a run's result:
# the container writes to a throwaway overlay, the build to a scratch directory, and
# both are gone when it ends. What the container shares with the host is its network:
# the Debian mirror the host's apt uses (FLEET_LAB_MIRROR overrides it; see `fleet-lab
# mirror`) and the host's local CA certificates (/usr/local/share/ca-certificates).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "pristine-check: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "pristine-check: needs root (nspawn, debootstrap)" >&2; exit 1; }
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh
for tool in debootstrap systemd-nspawn flock; do
  command -v "$tool" >/dev/null || { echo "pristine-check: $tool missing: run scripts/bootstrap.sh" >&2; exit 1; }
done

suite=bookworm
cache=/var/cache/fleet-pristine
tree=$cache/$suite-minbase
toolchain=$(rustc --print sysroot)
[ -x "$toolchain/bin/cargo" ] || { echo "pristine-check: no cargo in $toolchain/bin" >&2; exit 1; }

timings=()
step() { # step NAME COMMAND...: runs and times one step
  local name=$1 start rc=0
  shift
  echo "== pristine: $name"
  start=$(date +%s.%N)
  "$@" || rc=$?
  timings+=("$(printf '%-34s %7.1f s%s' "$name" "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$([ "$rc" -eq 0 ] || echo "  FAILED (exit $rc)")")")
  return "$rc"
}
report() {
  echo "== pristine-system check: step timings"
  printf '   %s\n' "${timings[@]}"
}

scratch=$(mktemp -d /var/tmp/fleet-pristine.XXXXXX)
cleanup() {
  local rc=$?
  report
  rm -rf "$scratch"
  exit "$rc"
}
trap cleanup EXIT

pristine_tree() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ -x "$tree/usr/bin/apt-get" ]; then
    echo "   cached at $tree"
    return 0
  fi
  local mirror tmp
  mirror=${FLEET_LAB_MIRROR:-$(cargo run -q --locked -p fleet-lab -- mirror --suite "$suite")}
  tmp=$cache/.tmp-$suite-$$
  rm -rf "$cache"/.tmp-*
  echo "   debootstrap --variant=minbase $suite from $mirror (once)"
  if ! debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$scratch/debootstrap.log" 2>&1; then
    tail -5 "$scratch/debootstrap.log" >&2
    rm -rf "$tmp"
    return 1
  fi
  # apt in the container fetches from the same mirror debootstrap used.
  mv "$tmp" "$tree"
}

# What runs inside: the steps a new user on a bare Debian 12 machine would run.
cat >"$scratch/inside.sh" <<'EOF'
set -euo pipefail
cd /src
t() { local s=$(date +%s%N); "$@"; echo "$(( ($(date +%s%N) - s) / 1000000 ))" >>/scratch/ms; }
echo "-- inside: scripts/bootstrap.sh"
t scripts/bootstrap.sh
echo "-- inside: cargo build --workspace --all-targets (empty target directory)"
t cargo build --workspace --all-targets --locked
echo "-- inside: tests that need neither root nor a lab"
t cargo test --workspace --locked --lib --bins --no-fail-fast
t cargo test --locked --no-fail-fast -p fleet-registry --tests
t cargo test --locked --no-fail-fast -p fleet-tests --test vagrant --test stack
EOF

inside() {
  mkdir -p "$scratch/target" "$scratch/src"
  # A snapshot of the checkout (tracked and new files, nothing ignored such as target/),
  # so edits made while it runs do not reach the build.
  git ls-files -z --cached --others --exclude-standard |
    tar --null --no-recursion --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$scratch/src"
  # The host's own trust anchors (Debian's place for local CAs), as the mirror is the
  # host's: a network behind a TLS-inspecting proxy works in the container as on the
  # host. bootstrap's ca-certificates picks them up when it installs.
  local trust=()
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    trust=(--bind-ro=/usr/local/share/ca-certificates)
  fi
  # --volatile=overlay: every write lands in a tmpfs over the pristine tree, so the
  # cached tree stays pristine. The host network is shared for apt and crates.io.
  systemd-nspawn --quiet --register=no --keep-unit --as-pid2 --console=pipe \
    -D "$tree" --volatile=overlay --resolv-conf=copy-host --timezone=off \
    -M "pristine-$$" \
    --bind-ro="$toolchain:/opt/rust" \
    --bind="$scratch/src:/src" \
    --bind="$scratch:/scratch" "${trust[@]}" \
    --setenv=PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --setenv=HOME=/root --setenv=CARGO_HOME=/root/.cargo \
    --setenv=CARGO_TARGET_DIR=/scratch/target --setenv=CARGO_TERM_COLOR=never \
    --setenv=CARGO_TERM_PROGRESS_WHEN=never --setenv=DEBIAN_FRONTEND=noninteractive \
    --setenv=RUST_BACKTRACE=1 \
    -- /bin/bash /scratch/inside.sh
}

step "pristine Debian $suite tree" pristine_tree
rc=0
step "container run (all below)" inside || rc=$?
names=("bootstrap.sh in the container" "workspace build from empty target" "unit tests" "registry tests (real etcd)" "vagrant + example-unit tests")
i=0
while read -r ms; do
  timings+=("$(printf '  %-32s %7.1f s' "${names[$i]}" "$(echo "$ms / 1000" | bc -l)")")
  i=$((i + 1))
done <"$scratch/ms" 2>/dev/null || true
if [ "$rc" -ne 0 ]; then
  echo "pristine-check: FAILED: a fresh Debian $suite with only the Rust toolchain cannot build or test fleet (see above); scripts/bootstrap.sh must install what is missing" >&2
  exit "$rc"
fi
echo "pristine-check: passed"
