#!/usr/bin/env bash
# Upgrade readiness at 5,000 nodes and 150,000 pods (issue: upgrade readiness, "Must show"):
# wall time and peak RSS of `kubectl skew plan --to NEXT -o json` (the readiness report:
# every listable kind read once for removed APIs, every node's drain planned from the same
# listing) against `kubectl get` of the same kinds as JSON, on the same lab in one run.
# Targets: at most 1.0x kubectl's time, at most 128 MB peak RSS.
# The kinds are the ones the report lists: every kind discovery says can be listed
# (`kubectl api-resources --verbs=list`), events once.
source "$(dirname "$0")/lib.sh"
[ "${BENCH_SETUP_DONE:-0}" = 1 ] || bench_setup
SCENARIO="${BENCH_READINESS_SCENARIO:-generate:nodes=5000,pods=150000}"
RUNS="${BENCH_READINESS_RUNS:-2}"
work=$(mktemp -d)
trap 'lab_stop; rm -rf "$work"' EXIT

header "readiness: kubectl skew plan -o json vs kubectl get (the same kinds) -o json, $SCENARIO"
LAB_START_TIMEOUT=600 lab_start "$SCENARIO" "$work"
echo "   lab ready in ${LAB_READY_SECONDS} s"
server=$(kc version -o json 2>/dev/null | jq -r '.serverVersion.minor' | tr -dc '0-9')
to="v1.$((server + 1))"
# The kinds the report lists: discovery's listable kinds (events.k8s.io Events are the
# core Events again: the report lists them once, so does this).
kinds=$(kc api-resources --verbs=list -o name | grep -v '^events.events.k8s.io$' | paste -sd, -)
echo "   kinds ($(tr ',' '\n' <<<"$kinds" | wc -l)): $kinds"

skew_bin="$(command -v kubectl-skew)"
# --kubectl-version: GNU time would otherwise report `kubectl version --client`'s memory.
skew_cmd=("$skew_bin" plan --to "$to" --kubectl-version v1.37.1 -o json)
get_cmd=("$KUBECTL" get "$kinds" -A -o json)

# GNU time: wall seconds and peak RSS (KiB) of one command, output kept for the checks.
timed() {
    local out="$1" log="$2"
    shift 2
    local rc=0
    KUBECONFIG="$LAB_KC" /usr/bin/time -f '%e %M' -o "$log" "$@" >"$out" 2>"$log.err" || rc=$?
    echo "$rc"
}

metrics_reset
rc=$(timed "$work/plan.json" "$work/plan.time" "${skew_cmd[@]}")
[ "$rc" -le 1 ] || { cat "$work/plan.time.err" >&2; die "kubectl skew plan exited $rc (could not tell)"; }
m=$(metrics_json)
echo "   kubectl skew plan --to $to: exit code $rc, verdict $(jq -r '.readiness.verdict' "$work/plan.json"), $(jq '[.readiness.hops[].findings[]] | length' "$work/plan.json") findings, $(jq '.readiness.unreadable | length' "$work/plan.json") unreadable"
echo "   API requests of one report: $(metrics_total <<<"$m") (lists: $(jq '[.[] | select(.verb == "list") | .count] | add // 0' <<<"$m"), gets: $(jq '[.[] | select(.verb == "get") | .count] | add // 0' <<<"$m"))"
echo "   pod list requests: $(jq '[.[] | select(.verb == "list" and .resource == "pods") | .count] | add // 0' <<<"$m")"
metrics_reset
rc=$(timed "$work/get.json" "$work/get.time" "${get_cmd[@]}")
[ "$rc" = 0 ] || { cat "$work/get.time.err" >&2; die "kubectl get exited $rc"; }
m=$(metrics_json)
echo "   kubectl get: $(jq '.items | length' "$work/get.json") objects; API requests: $(metrics_total <<<"$m"), pod list requests: $(jq '[.[] | select(.verb == "list" and .resource == "pods") | .count] | add // 0' <<<"$m")"
rm -f "$work/get.json" "$work/plan.json"

# Alternate the two, RUNS times each, on the same lab.
for i in $(seq 1 "$RUNS"); do
    timed /dev/null "$work/plan.$i" "${skew_cmd[@]}" >/dev/null
    timed /dev/null "$work/get.$i" "${get_cmd[@]}" >/dev/null
    read -r ps pk <"$work/plan.$i"
    read -r gs gk <"$work/get.$i"
    echo "   run $i: report ${ps} s, ${pk} KiB; kubectl get ${gs} s, ${gk} KiB"
done
p_med=$(for i in $(seq 1 "$RUNS"); do cut -d' ' -f1 "$work/plan.$i"; done | median)
g_med=$(for i in $(seq 1 "$RUNS"); do cut -d' ' -f1 "$work/get.$i"; done | median)
p_rss=$(for i in $(seq 1 "$RUNS"); do cut -d' ' -f2 "$work/plan.$i"; done | sort -g | tail -1)
g_rss=$(for i in $(seq 1 "$RUNS"); do cut -d' ' -f2 "$work/get.$i"; done | sort -g | tail -1)
awk -v p="$p_med" -v g="$g_med" 'BEGIN { printf "   ratio (report / kubectl get), medians: %.3f (%.2f s / %.2f s; target <= 1)\n", p / g, p, g }'
awk -v p="$p_rss" -v g="$g_rss" 'BEGIN { printf "   peak RSS: report %.1f MiB (target <= 128 MB = 122.1 MiB); kubectl get %.1f MiB; ratio %.3f\n", p / 1024, g / 1024, p / g }'
