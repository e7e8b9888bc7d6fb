#!/usr/bin/env bash
# Renders krew/plugins/<name>.yaml for a release: one archive per platform
# (all four plugins plus LICENSE), one manifest per plugin.
#
#   scripts/krew-manifests.sh VERSION DIST_DIR
#
# DIST_DIR holds upkeep_<VERSION>_<os>_<arch>.tar.gz archives (built by the
# release job); every archive found there becomes a platform entry, with its
# real sha256. Run at release time, commit the result with the tag.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/krew-manifests.sh VERSION DIST_DIR}
dist=${2:?usage: scripts/krew-manifests.sh VERSION DIST_DIR}
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "VERSION must look like v1.2.3" >&2; exit 1; }
repo="https://github.com/upkeep-dev/kubectl-upkeep"

declare -A short desc
short[skew]="Check Kubernetes component versions against the skew policy"
desc[skew]="Compares every component's version (apiservers, controller-managers,
    schedulers, kubelets, kube-proxies, kubectl) with the official version skew
    policy, reports the support window from a release calendar, and plans the
    upgrade path one minor at a time (kubectl skew plan --to vX.Y)."
short[safedrain]="Drain a node without losing pods, and wait until workloads are whole"
desc[safedrain]="A drain that plans first and refuses what would lose work: bare pods,
    emptyDir data, opt-out annotations, PodDisruptionBudgets that cannot cover the
    node, pods that fit nowhere. It names what blocks, evicts with backoff, and
    waits until the owning workloads are ready elsewhere."
short[upgrade-node]="Upgrade a kubeadm node safely and resumably"
desc[upgrade-node]="Takes one node (or the whole cluster, node by node) through the kubeadm
    upgrade: preflight against the skew policy, package repository switch,
    kubeadm, drain, kubelet, restart, Ready, uncordon. Shows the exact commands,
    records progress on the node and resumes after an interruption."
short[backup]="Take and verify etcd snapshots, and export cluster resources"
desc[backup]="etcd snapshot save/status/restore through the etcd Maintenance API with
    checksum verification and atomic 0600 files, and a complete export of every
    listable resource found by discovery."

declare -A bin=([skew]=kubectl-skew [safedrain]=kubectl-safedrain [upgrade-node]=kubectl-upgrade_node [backup]=kubectl-backup)

mkdir -p krew/plugins
for name in skew safedrain upgrade-node backup; do
    out="krew/plugins/$name.yaml"
    {
        echo "apiVersion: krew.googlecontainertools.github.com/v1alpha2"
        echo "kind: Plugin"
        echo "metadata:"
        echo "  name: $name"
        echo "spec:"
        echo "  version: $version"
        echo "  homepage: $repo"
        echo "  shortDescription: ${short[$name]}"
        echo "  description: |"
        echo "    ${desc[$name]}"
        if [ "$name" = upgrade-node ]; then
            echo "  caveats: |"
            echo "    Runs commands on nodes through ssh (the default), a privileged pod"
            echo "    (--via pod), or by hand (--via manual). ssh must be on PATH for the default."
        fi
        echo "  platforms:"
        found=0
        for archive in "$dist"/upkeep_"${version}"_*_*.tar.gz; do
            [ -e "$archive" ] || continue
            found=1
            base=$(basename "$archive" .tar.gz)
            os=$(echo "$base" | awk -F_ '{print $(NF-1)}')
            arch=$(echo "$base" | awk -F_ '{print $NF}')
            sum=$(sha256sum "$archive" | cut -d' ' -f1)
            echo "  - selector:"
            echo "      matchLabels:"
            echo "        os: $os"
            echo "        arch: $arch"
            echo "    uri: $repo/releases/download/$version/$(basename "$archive")"
            echo "    sha256: $sum"
            echo "    bin: ${bin[$name]}"
            echo "    files:"
            echo "    - from: ${bin[$name]}"
            echo "      to: ."
            echo "    - from: LICENSE"
            echo "      to: ."
        done
        [ $found = 1 ] || { echo "no archives upkeep_${version}_<os>_<arch>.tar.gz in $dist" >&2; exit 1; }
    } > "$out"
    echo "wrote $out" >&2
done
