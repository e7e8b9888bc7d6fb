#!/usr/bin/env bash
# The PDB-paced drain under the lab's realistic timing profile (issue: adversity, "Must
# show"): a 10-replica Deployment on node01 behind a maxUnavailable-1 PDB, each pod's 30 s
# termination grace honoured, readiness 5 s after start (readinessProbe.initialDelaySeconds).
# `kubectl safedrain node01 --yes` and `kubectl drain node01 --ignore-daemonsets`, a fresh
# lab per run, alternating. Target: safedrain within 1.1x of the floor.
#
# The floor comes from the lab's own timeline of the run: a watch on the namespace's pods,
# opened before the drain, each event stamped as it arrives. For the k-th evicted pod,
# its replacement time is from the event that shows the evicted pod terminating to the
# event that shows the k-th replacement Ready; with maxUnavailable 1 the next eviction can
# only be admitted after that, so no drain can beat the sum of the replacement times
# (the floor the issue names). Both tools also wait until the node is empty, so the last
# evicted pod's termination past its replacement's readiness is unavoidable too; the
# script prints that second floor (sum of the first n-1 replacement times + the longer of
# the last replacement time and the last termination) beside the first.
#
# The lab runs at time scale 1: kubectl drain's 5 s retry and both clients' timers run
# on real time, so a faster lab clock would shrink only the lab's waits.
# Usage: bench/drain-paced.sh   (BENCH_DRAIN_RUNS: fresh labs per tool, default 3; run on its
# own, it builds only upkeep-lab and kubectl-safedrain)
source "$(dirname "$0")/lib.sh"
[ "${BENCH_SETUP_DONE:-0}" = 1 ] || BENCH_PACKAGES="upkeep-lab kubectl-safedrain" bench_setup
RUNS="${BENCH_DRAIN_RUNS:-3}"
PODS=10
work=$(mktemp -d)
export KUBECACHEDIR="$work/kube-cache"
WATCH_PID=""
trap 'lab_stop; [ -z "$WATCH_PID" ] || wait "$WATCH_PID" 2>/dev/null; rm -rf "$work"' EXIT

# Prefixes each line with the arrival time (bash's clock, no process per line).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }

all_ready_on_node01() {
    [ "$(kc get pods -n default -l app=web --field-selector spec.nodeName=node01 \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -eq "$PODS" ]
}

# The watch has delivered its initial ADDED event for every pod.
watch_started() { [ "$(grep -c '"type":"ADDED"' "$work/timeline")" -ge "$PODS" ]; }

# The run's figures from the stamped timeline (t0: the drain's start).
analyse() {
    local timeline="$1" t0="$2"
    jq -R -s --argjson t0 "$t0" '
      [ split("\n")[] | select(length > 0) | (index(" ")) as $i
        | {t: (.[:$i] | tonumber), e: (.[$i + 1:] | fromjson)}
        | select(.e.type != "BOOKMARK" and .e.type != "ERROR")
        | {t, type: .e.type, uid: .e.object.metadata.uid,
           terminating: (.e.object.metadata.deletionTimestamp != null),
           ready: ([.e.object.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length > 0)} ] as $ev
      | ($ev | map(select(.t < $t0) | .uid) | unique) as $orig
      | [ $orig[] as $u | $ev | map(select(.uid == $u)) as $e
          | {terminating: ($e | map(select(.terminating or .type == "DELETED")) | first | .t),
             gone: ($e | map(select(.type == "DELETED")) | first | .t)} ]
        | map(select(.terminating != null)) | sort_by(.terminating) as $evicted
      | [ $ev | map(select(.t >= $t0 and (.uid as $u | $orig | index($u) | not))) | group_by(.uid)[]
          | {created: (map(.t) | min), ready: (map(select(.ready)) | first | .t)} ]
        | sort_by(.created) as $repl
      | [ range(0; $evicted | length) as $k
          | {evicted: ($evicted[$k].terminating - $t0), gone: (($evicted[$k].gone // null) | if . then . - $t0 else null end),
             ready: (($repl[$k].ready // null) | if . then . - $t0 else null end)} ] as $pairs
      | ($pairs | map(if .ready then .ready - .evicted else null end)) as $d
      | ($pairs | last) as $lastp
      | {evicted: ($evicted | length), replaced: ($d | map(select(. != null)) | length),
         first_eviction: ($pairs | first | .evicted),
         floor: ($d | map(. // 0) | add),
         floor_empty: (($d[:-1] | map(. // 0) | add // 0)
                       + ([($d | last // 0), (if $lastp.gone then $lastp.gone - $lastp.evicted else 0 end)] | max)),
         replacement_times: $d, pairs: $pairs,
         lags: [range(1; $pairs | length) as $k
                | if $pairs[$k - 1].ready then $pairs[$k].evicted - $pairs[$k - 1].ready else null end],
         last_gone: ($pairs | map(.gone // 0) | max)}' "$timeline"
}

# one_run TOOL: prints "wall floor floor_empty" on stdout, the details on stderr.
one_run() {
    local tool="$1" rc=0 t0 t1
    lab_start "$SCEN/drain-paced.yaml" "$work/lab" >&2
    kc uncordon node02 node03 >/dev/null
    wait_for "$PODS Ready web pods on node01" 120 all_ready_on_node01
    kc get --raw "/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dweb" \
        2>"$work/watch.err" | stamp >"$work/timeline" &
    WATCH_PID=$!
    wait_for "the pod watch's initial events" 30 watch_started
    metrics_reset
    t0=$EPOCHREALTIME
    case "$tool" in
    safedrain) kc safedrain node01 --yes >"$work/out.txt" 2>&1 || rc=$? ;;
    kubectl) kc drain node01 --ignore-daemonsets >"$work/out.txt" 2>&1 || rc=$? ;;
    esac
    t1=$EPOCHREALTIME
    metrics_json >"$work/last-metrics.json"
    if [ "$rc" -ne 0 ]; then
        cat "$work/out.txt" >&2
        die "drain-paced: $tool exited $rc"
    fi
    local left ready wall
    left=$(kc get pods -n default --field-selector spec.nodeName=node01 --no-headers 2>/dev/null | wc -l)
    ready=$(kc get deployment web -n default -o jsonpath='{.status.readyReplicas}')
    lab_stop
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    analyse "$work/timeline" "$t0" >"$work/$tool-analysis.json"
    local a="$work/$tool-analysis.json"
    [ "$(jq .evicted "$a")" -eq "$PODS" ] && [ "$(jq .replaced "$a")" -eq "$PODS" ] ||
        die "drain-paced: the timeline shows $(jq .evicted "$a") evictions and $(jq .replaced "$a") Ready replacements, expected $PODS of each"
    local floor floor_empty
    floor=$(jq '.floor * 1000 | round / 1000' "$a")
    floor_empty=$(jq '.floor_empty * 1000 | round / 1000' "$a")
    {
        echo "     $tool: ${wall} s, $(metrics_total <"$work/last-metrics.json") requests; after it: ${left} web pods on node01, ${ready}/${PODS} replicas Ready"
        echo "       floor (sum of replacement times) ${floor} s: ratio $(awk -v a="$wall" -v b="$floor" 'BEGIN { printf "%.3f", a / b }');" \
            "with the last termination: ${floor_empty} s, ratio $(awk -v a="$wall" -v b="$floor_empty" 'BEGIN { printf "%.3f", a / b }')"
        echo "       first eviction at $(jq '.first_eviction * 1000 | round / 1000' "$a") s; replacement times (s): $(jq -c '[.replacement_times[] | . * 1000 | round / 1000]' "$a")"
        echo "       evictions admitted at (s): $(jq -c '[.pairs[].evicted | . * 10 | round / 10]' "$a")"
        echo "       each eviction after the previous replacement was Ready (s): $(jq -c '[.lags[] | if . then . * 1000 | round / 1000 else null end]' "$a");" \
            "node empty at $(jq '.last_gone * 1000 | round / 1000' "$a") s, the tool returned $(jq --argjson w "$wall" '($w - .last_gone) * 1000 | round / 1000' "$a") s later"
    } >&2
    echo "$wall $floor $floor_empty"
}

header "drain-paced: kubectl safedrain node01 --yes vs kubectl drain node01 --ignore-daemonsets, bench/scenarios/drain-paced.yaml (realistic profile, time scale 1), $RUNS runs each, fresh lab per run"
: >"$work/safedrain.txt"
: >"$work/kubectl.txt"
for i in $(seq "$RUNS"); do
    for tool in safedrain kubectl; do
        one_run "$tool" >>"$work/$tool.txt"
        cp "$work/last-metrics.json" "$work/$tool-metrics.json"
    done
done
ratios() { awk '{ printf "%.4f\n", $1 / $'"$2"' }' "$1" | median; }
s=$(cut -d' ' -f1 "$work/safedrain.txt" | median)
k=$(cut -d' ' -f1 "$work/kubectl.txt" | median)
echo "   median wall time: safedrain ${s} s, kubectl drain ${k} s; ratio safedrain/kubectl $(awk -v a="$s" -v b="$k" 'BEGIN { printf "%.2f", a / b }')"
echo "   median ratio to the floor (sum of replacement times): safedrain $(ratios "$work/safedrain.txt" 2) (target <= 1.1), kubectl drain $(ratios "$work/kubectl.txt" 2)"
echo "   median ratio to the floor with the last termination: safedrain $(ratios "$work/safedrain.txt" 3), kubectl drain $(ratios "$work/kubectl.txt" 3)"
echo "   safedrain's requests (last run):"
metrics_lines <"$work/safedrain-metrics.json"
echo "   kubectl drain's requests (last run):"
metrics_lines <"$work/kubectl-metrics.json"
