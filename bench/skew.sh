#!/usr/bin/env bash
# kubectl skew at 5,000 nodes (issue: kubectl skew, "Performance"): wall time of
# `kubectl skew -o json` against `kubectl get nodes -o json` on the same lab (hyperfine),
# kubectl-skew's peak RSS (target < 64 MB), and the list requests it makes (paged).
source "$(dirname "$0")/lib.sh"
[ "${BENCH_SETUP_DONE:-0}" = 1 ] || bench_setup
RUNS="${BENCH_RUNS:-10}"
work=$(mktemp -d)
trap 'lab_stop; rm -rf "$work"' EXIT

header "skew: kubectl skew -o json vs kubectl get nodes -o json, bench/scenarios/skew-5000.yaml"
lab_start "$SCEN/skew-5000.yaml" "$work"
echo "   lab ready (settled: the kube-proxy DaemonSet's pods placed and Running) in ${LAB_READY_SECONDS} s"
wait_for "5,001 Running kube-proxy pods" 120 \
    bash -c '[ "$(KUBECONFIG='"$LAB_KC"' '"$KUBECTL"' get pods -n kube-system -l k8s-app=kube-proxy --field-selector status.phase=Running --no-headers | wc -l)" -ge 5001 ]'
nodes=$(kc get nodes --no-headers | wc -l)
proxies=$(kc get pods -n kube-system -l k8s-app=kube-proxy --field-selector status.phase=Running --no-headers | wc -l)
owned=$(kc get pods -n kube-system -l k8s-app=kube-proxy -o json \
    | jq '[.items[] | select(.metadata.ownerReferences[]? | .kind == "DaemonSet" and .controller)] | length')
echo "   ${nodes} nodes, ${proxies} Running kube-proxy pods, ${owned} of them owned by the kube-proxy DaemonSet"
[ "$nodes" -ge 5000 ] && [ "$proxies" -ge 5000 ] || die "the scenario did not produce 5,000 nodes with kube-proxy pods"

# One checked run: exit code and the API requests it makes.
metrics_reset
rc=0
kc skew -o json >"$work/skew.json" || rc=$?
[ "$rc" -le 1 ] || die "kubectl skew exited $rc (could not check)"
m=$(metrics_json)
echo "   kubectl skew exit code ${rc}, $(jq '.violations | length' "$work/skew.json") violations"
echo "   API requests of one kubectl skew run: $(metrics_total <<<"$m")"
metrics_lines <<<"$m"
node_lists=$(jq '[.[] | select(.verb == "list" and .resource == "nodes") | .count] | add // 0' <<<"$m")
echo "   node list requests: ${node_lists} for ${nodes} nodes (one list would be 1; pages of 500 make $(( (nodes + 499) / 500 )))"

metrics_reset
kc get nodes -o json >/dev/null
m=$(metrics_json)
echo "   API requests of one kubectl get nodes -o json: $(metrics_total <<<"$m")"
metrics_lines <<<"$m"

# Wall time, same lab, alternating runs.
export KUBECONFIG="$LAB_KC"
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/hf.json" \
    -n "kubectl skew -o json" "$KUBECTL skew -o json" \
    -n "kubectl get nodes -o json" "$KUBECTL get nodes -o json" \
    | sed 's/^/   /'
jq -r '.results as $r | "   ratio (kubectl skew / kubectl get nodes), mean: \($r[0].mean / $r[1].mean * 1000 | round / 1000) (\($r[0].mean * 1000 | round) ms / \($r[1].mean * 1000 | round) ms; target <= 1)"' "$work/hf.json"

# Peak resident memory (GNU time's maximum resident set size), each measured alone.
# --kubectl-version keeps kubectl skew from running `kubectl version --client`, whose memory
# GNU time would otherwise report if it were the larger of the two processes.
/usr/bin/time -v -o "$work/skew.time" "$REL/kubectl-skew" --kubeconfig "$LAB_KC" --kubectl-version v1.37.1 -o json >/dev/null || true
/usr/bin/time -v -o "$work/get.time" "$KUBECTL" --kubeconfig "$LAB_KC" get nodes -o json >/dev/null
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
echo "   peak RSS: kubectl-skew $(rss "$work/skew.time") MiB (target < 64 MB = 61.0 MiB); kubectl get nodes -o json $(rss "$work/get.time") MiB"
