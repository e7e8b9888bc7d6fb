#!/usr/bin/env bash
# The whole test suite: installs its own test dependencies, checks formatting
# and lints, builds the plugins and the lab, then runs every test (unit tests,
# real kubectl against the lab, real etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --real-nodes
export UPKEEP_KUBECTL="$PWD/.venv/bin/kubectl"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
