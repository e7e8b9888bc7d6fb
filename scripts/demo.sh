#!/usr/bin/env bash
# The main job, end to end, on the embedded lab cluster (no real cluster needed):
# starts `upkeep-lab serve --scenario os-upgrade` (controlplane, node01, node02,
# a Deployment and the bare pod hr-app on node01, as in the CKA practice test)
# and runs the plugins through real kubectl's plugin mechanism.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins --locked
export NO_COLOR=1

work=$(mktemp -d)
# Only the binaries on PATH: kubectl treats every kubectl-* file as a plugin.
mkdir "$work/bin"
for b in upkeep-lab kubectl-skew kubectl-safedrain kubectl-upgrade_node kubectl-backup; do
    ln -s "$PWD/target/debug/$b" "$work/bin/$b"
done
export PATH="$work/bin:$PWD/.venv/bin:$PATH"
export KUBECONFIG="$work/kubeconfig"
upkeep-lab serve --scenario os-upgrade --listen 127.0.0.1:0 --kubeconfig "$KUBECONFIG" 2>"$work/lab.log" &
lab=$!
trap 'kill $lab 2>/dev/null; wait $lab 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do
    [ -s "$KUBECONFIG" ] && break
    kill -0 $lab 2>/dev/null || { cat "$work/lab.log" >&2; exit 1; }
    sleep 0.1
done
[ -s "$KUBECONFIG" ] || { echo "the lab did not start within 60 s" >&2; exit 1; }
kubectl wait --for=condition=Ready pods --all -n default --timeout=60s >/dev/null

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@" || echo "(exit code $?)"; }
step kubectl get nodes
step kubectl get pods -o wide
step kubectl plugin list --name-only
step kubectl skew
step kubectl skew plan --to v1.35
step kubectl safedrain node01 --dry-run
step kubectl safedrain node01 --yes
step kubectl drain node01 --ignore-daemonsets --dry-run=client
step kubectl safedrain node02 --yes
step kubectl get pods -o wide
step kubectl safedrain node02 --uncordon --yes
# The lab's node shells stand in for ssh: they answer apt-get, kubeadm and systemctl
# like a kubeadm node would.
shell="upkeep-lab node-shell --kubeconfig $KUBECONFIG {node} --"
step kubectl upgrade-node node01 --to v1.35 --dry-run --remote-shell "$shell"
step kubectl upgrade-node controlplane --to v1.35 --dry-run --remote-shell "$shell"
step kubectl backup resources "$work/export"
echo
echo "The lab is still a real API server: try it yourself with"
echo "  target/debug/upkeep-lab serve --scenario os-upgrade --kubeconfig lab.kubeconfig"
