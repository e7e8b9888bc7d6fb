#!/usr/bin/env bash
# Builds the release archive for this machine's platform:
#   dist/upkeep_<VERSION>_<os>_<arch>.tar.gz  (the four plugins, their kubectl_complete-*
#   companions + LICENSE)
#   scripts/package.sh v0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/package.sh VERSION}
os=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
# Only the plugins' packages: built together with the lab, cargo would unify the lab's
# features (tracing-subscriber's env-filter and its regex engine) into the plugins.
cargo build --release --locked --bins \
    -p kubectl-skew -p kubectl-safedrain -p kubectl-upgrade-node -p kubectl-backup
stage=$(mktemp -d)
for b in kubectl-skew kubectl-safedrain kubectl-upgrade_node kubectl-backup; do
    cp "target/release/$b" "$stage/"
    # kubectl 1.26+ completes `kubectl PLUGIN` through this companion on PATH.
    cp "target/release/kubectl_complete-${b#kubectl-}" "$stage/"
done
cp LICENSE "$stage/"
mkdir -p dist
tar -C "$stage" -czf "dist/upkeep_${version}_${os}_${arch}.tar.gz" .
rm -rf "$stage"
echo "dist/upkeep_${version}_${os}_${arch}.tar.gz"
