#!/usr/bin/env bash
# Lab scale (issue: upkeep-lab, "Scale"): the generated 5,000-node, 150,000-pod scenario.
# Measures the time from launch until the kubeconfig is written and `kubectl get --raw
# /readyz` answers, and the lab's peak resident memory (VmHWM) after a full pod list.
# Targets: < 60 s, < 4 GB.
source "$(dirname "$0")/lib.sh"
[ "${BENCH_SETUP_DONE:-0}" = 1 ] || bench_setup
work=$(mktemp -d)
trap 'lab_stop; rm -rf "$work"' EXIT

header "lab-scale: upkeep-lab serve --scenario generate:nodes=5000,pods=150000"
lab_start "generate:nodes=5000,pods=150000" "$work"
rss_ready=$(lab_peak_rss_mib)
echo "   ready (kubeconfig written, /readyz answers): ${LAB_READY_SECONDS} s   (target < 60 s)"
echo "   peak RSS when ready: ${rss_ready} MiB"
# Serve the whole pod list once (kubectl pages by 500), so the peak includes serving it.
t0=$(now)
n=$(kc get pods -A --no-headers 2>/dev/null | wc -l)
echo "   kubectl get pods -A: ${n} pods in $(elapsed "$t0") s"
t0=$(now)
kc get nodes -o json >/dev/null
echo "   kubectl get nodes -o json: $(elapsed "$t0") s"
echo "   peak RSS after both lists: $(lab_peak_rss_mib) MiB   (target < 4096 MiB)"
