#!/usr/bin/env bash
# Rolling upgrade of 100 workers (issue: kubectl upgrade-node, "Performance"): the
# cluster-upgrade scenario scaled to 2 control-plane nodes + 100 workers
# (bench/scenarios/upgrade-100.yaml) with every lab-imposed wait at zero (pod start,
# readiness and termination are instant; a kubelet restart reports its version at once),
# so the whole wall time is orchestration overhead. Target: <= 0.5 s per node.
# The transport is the lab's node shell, one process per command, as ssh would be.
source "$(dirname "$0")/lib.sh"
[ "${BENCH_SETUP_DONE:-0}" = 1 ] || bench_setup
TARGET="${BENCH_UPGRADE_TO:-v1.35.2}"
work=$(mktemp -d)
export KUBECACHEDIR="$work/kube-cache"
trap 'lab_stop; rm -rf "$work"' EXIT

header "upgrade: kubectl upgrade-node --all --to $TARGET --yes --wait-for-pdb --remote-shell '<upkeep-lab node-shell>', bench/scenarios/upgrade-100.yaml"
lab_start "$SCEN/upgrade-100.yaml" "$work/lab"
nodes=$(kc get nodes --no-headers | wc -l)
echo "   lab ready in ${LAB_READY_SECONDS} s: ${nodes} nodes"
shell="$LAB_BIN node-shell --kubeconfig $LAB_KC {node} -- sh -c"

# The transport alone: one node-shell process running `true`, 20 times.
t0=$(now)
for _ in $(seq 20); do "$LAB_BIN" node-shell --kubeconfig "$LAB_KC" node001 -- sh -c true; done
echo "   transport: one node-shell command costs $(awk -v t="$(elapsed "$t0")" 'BEGIN { printf "%.0f", t / 20 * 1000 }') ms (mean of 20)"

metrics_reset
t0=$(now)
rc=0
KUBECONFIG="$LAB_KC" timeout "${BENCH_UPGRADE_TIMEOUT:-900}" "$KUBECTL" upgrade-node --all --to "$TARGET" --yes --wait-for-pdb \
    --remote-shell "$shell" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
secs=$(elapsed "$t0")
m=$(metrics_json)
if [ "$rc" -ne 0 ]; then
    echo "   FAILED: kubectl upgrade-node exited ${rc} after ${secs} s"
    echo "   stdout (last 15 lines):"
    tail -n 15 "$work/out.txt" | sed 's/^/     | /'
    echo "   stderr (last 25 lines):"
    tail -n 25 "$work/err.txt" | sed 's/^/     | /'
    exit 1
fi
upgraded=$(kc get nodes -o json | jq --arg v "$TARGET" '[.items[] | select(.status.nodeInfo.kubeletVersion == $v)] | length')
cordoned=$(kc get nodes -o json | jq '[.items[] | select(.spec.unschedulable == true)] | length')
commands=$(kc get --raw /lab/v1/nodes/node050/host | jq '(.history // .commandHistory // []) | length' 2>/dev/null || echo "?")
echo "   wall time: ${secs} s for ${nodes} nodes; ${upgraded} nodes report kubelet ${TARGET}, ${cordoned} cordoned"
echo "   per node: $(awk -v t="$secs" -v n="$nodes" 'BEGIN { printf "%.3f", t / n }') s (target <= 0.5 s; lab-imposed waits are zero)"
echo "   node shell commands run on a worker (node050): ${commands}"
echo "   API requests: $(metrics_total <<<"$m") ($(awk -v t="$(metrics_total <<<"$m")" -v n="$nodes" 'BEGIN { printf "%.0f", t / n }') per node)"
metrics_lines <<<"$m"
rc=0
kc skew -o json >"$work/skew.json" 2>/dev/null || rc=$?
echo "   kubectl skew after the upgrade: exit ${rc}; violations: $(jq -r '[.violations[] | "\(.component) \(.version) (\(.rule))"] | if length == 0 then "none" else join(", ") end' "$work/skew.json")"
