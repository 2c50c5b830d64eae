#!/usr/bin/env bash
# The whole test suite: prerequisites, formatting, lints, then every test (unit tests,
# tests against a real etcd, and the lab's end-to-end tests, which need root).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test: the lab's tests need root (run it as root, or with sudo)" >&2; exit 1; }
scripts/bootstrap.sh
# shellcheck source=scripts/cargo-env.sh
. scripts/cargo-env.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
