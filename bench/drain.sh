#!/usr/bin/env bash
# safedrain vs kubectl drain (issue: kubectl safedrain, "Performance"), each run on a fresh
# lab of the same scenario:
#   drain-110  node01 carries 110 ReplicaSet pods: wall time, and API requests from the lab's
#              metrics (target: safedrain <= pods + 20 requests, no slower than kubectl drain)
#   drain-pdb  a 10-replica Deployment on node01 behind a maxUnavailable-1 PDB, replacements
#              Ready 1 s after binding (target: safedrain <= half of kubectl drain's time)
# Usage: bench/drain.sh [drain-110|drain-pdb]...   (default: both)
source "$(dirname "$0")/lib.sh"
[ "${BENCH_SETUP_DONE:-0}" = 1 ] || bench_setup
RUNS="${BENCH_DRAIN_RUNS:-3}"
work=$(mktemp -d)
export KUBECACHEDIR="$work/kube-cache"
trap 'lab_stop; rm -rf "$work"' EXIT

# one_run SCENARIO PODS TOOL: a fresh lab, the other nodes uncordoned, the drain timed.
# Prints "seconds requests" and leaves the request breakdown in $work/last-metrics.json.
one_run() {
    local scenario="$1" pods="$2" tool="$3" t0 secs rc=0
    lab_start "$SCEN/$scenario.yaml" "$work/lab" >&2
    kc uncordon node02 node03 >/dev/null
    local on_node
    on_node=$(kc get pods -n default --field-selector spec.nodeName=node01,status.phase=Running --no-headers | wc -l)
    [ "$on_node" -eq "$pods" ] || die "$scenario: expected $pods running pods on node01, found $on_node"
    metrics_reset
    t0=$(now)
    case "$tool" in
    safedrain)
        local extra=()
        [ "$scenario" = drain-pdb ] && extra=(--wait-for-pdb)
        kc safedrain node01 --yes "${extra[@]}" >"$work/out.txt" 2>&1 || rc=$?
        ;;
    kubectl) kc drain node01 --ignore-daemonsets >"$work/out.txt" 2>&1 || rc=$? ;;
    esac
    secs=$(elapsed "$t0")
    metrics_json >"$work/last-metrics.json"
    if [ "$rc" -ne 0 ]; then
        cat "$work/out.txt" >&2
        die "$scenario: $tool exited $rc"
    fi
    local left ready
    left=$(kc get pods -n default --field-selector spec.nodeName=node01 --no-headers 2>/dev/null | wc -l)
    ready=$(kc get deployment web -n default -o jsonpath='{.status.readyReplicas}')
    echo "     $tool: ${secs} s, $(metrics_total <"$work/last-metrics.json") requests; after it: ${left} web pods on node01, ${ready}/${pods} replicas Ready" >&2
    lab_stop
    echo "$secs $(metrics_total <"$work/last-metrics.json")"
}

bench_one() {
    local scenario="$1" pods="$2"
    header "$scenario: kubectl safedrain node01 --yes$([ "$scenario" = drain-pdb ] && echo ' --wait-for-pdb') vs kubectl drain node01 --ignore-daemonsets, bench/scenarios/$scenario.yaml, $RUNS runs each, fresh lab per run"
    : >"$work/safedrain.txt"
    : >"$work/kubectl.txt"
    for i in $(seq "$RUNS"); do
        for tool in safedrain kubectl; do
            one_run "$scenario" "$pods" "$tool" >>"$work/$tool.txt"
            cp "$work/last-metrics.json" "$work/$tool-metrics.json"
        done
    done
    local s k sr kr
    s=$(cut -d' ' -f1 "$work/safedrain.txt" | median)
    k=$(cut -d' ' -f1 "$work/kubectl.txt" | median)
    sr=$(cut -d' ' -f2 "$work/safedrain.txt" | median)
    kr=$(cut -d' ' -f2 "$work/kubectl.txt" | median)
    echo "   median wall time: safedrain ${s} s, kubectl drain ${k} s; ratio safedrain/kubectl $(awk -v a="$s" -v b="$k" 'BEGIN { printf "%.2f", a / b }')"
    if [ "$scenario" = drain-110 ]; then
        echo "   median API requests: safedrain ${sr} (target <= pods + 20 = $((pods + 20))), kubectl drain ${kr}"
    else
        echo "   median API requests: safedrain ${sr}, kubectl drain ${kr}"
    fi
    echo "   safedrain's requests (last run):"
    metrics_lines <"$work/safedrain-metrics.json"
    echo "   kubectl drain's requests (last run):"
    metrics_lines <"$work/kubectl-metrics.json"
}

[ $# -gt 0 ] || set -- drain-110 drain-pdb
for b in "$@"; do
    case "$b" in
    drain-110) bench_one drain-110 110 ;;
    drain-pdb) bench_one drain-pdb 10 ;;
    *) die "unknown drain benchmark $b (drain-110, drain-pdb)" ;;
    esac
done
