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
export PATH="$work/bin:$PWD/.venv/bin:$PATH" ETCDCTL_API=3
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
# skew plan was NOT READY above for node01's bare pod: it upgrades every node. Upgrading the
# control plane alone is not stopped by node01's drain; --all is, before anything changes.
step kubectl upgrade-node controlplane --to v1.35 --dry-run --remote-shell "$shell"
step kubectl upgrade-node --all --to v1.35 --dry-run --remote-shell "$shell"
step kubectl backup resources "$work/export"

# The seeds' "Backup and Restore Methods" practice on a lab that keeps its objects in a real
# etcd, as kube-apiserver does: save a snapshot, lose a Deployment, stop the API server,
# restore into a new data directory, start etcd and the API server on it.
kill $lab; wait $lab 2>/dev/null || true
serve_on_etcd() { # DATA_DIR [ARGS...]: a lab whose etcd runs on DATA_DIR; sets $lab and $etcd
    local dir=$1; shift
    rm -f "$KUBECONFIG"
    upkeep-lab serve --etcd-data-dir "$dir" "$@" --listen 127.0.0.1:0 --kubeconfig "$KUBECONFIG" 2>"$work/lab.log" &
    lab=$!
    for _ in $(seq 1 600); do
        [ -s "$KUBECONFIG" ] && break
        kill -0 $lab 2>/dev/null || { cat "$work/lab.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -s "$KUBECONFIG" ] || { echo "the lab did not start within 60 s" >&2; exit 1; }
    etcd=$(sed -n 's/^upkeep-lab: etcd serving \([^ ]*\) .*/\1/p' "$work/lab.log")
    kubectl wait --for=condition=Available deployments --all -n default --timeout=60s >/dev/null
}
stop_lab() { kill $lab; wait $lab 2>/dev/null || true; }
serve_on_etcd "$work/etcd" --scenario backup-restore
step kubectl get deployments
step etcdctl --endpoints "$etcd" get /registry/deployments --prefix --keys-only
step kubectl backup etcd save "$work/snapshot.db" --endpoints "$etcd"
step kubectl backup etcd status "$work/snapshot.db"
step kubectl delete deployment blue
step kubectl get deployments
stop_lab
step kubectl backup etcd restore "$work/snapshot.db" --data-dir "$work/etcd-from-backup"
serve_on_etcd "$work/etcd-from-backup"
step kubectl get deployments
step kubectl get pods -o wide
echo
echo "The lab is still a real API server: try it yourself with"
echo "  target/debug/upkeep-lab serve --scenario os-upgrade --kubeconfig lab.kubeconfig"
