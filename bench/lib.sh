# Shared helpers for the benchmark scripts (sourced, not run).
#
# Binaries come from the release profile (`cargo build --release --bins`); kubectl is the
# project's real kubectl in .venv (scripts/setup.sh installs it). Every lab is started on
# 127.0.0.1:0 in a scratch directory and stopped by its own process id.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
# BENCH_BIN_DIR: take the binaries from there instead (e.g. target/debug); no build then.
REL="${BENCH_BIN_DIR:-$ROOT/target/release}"
LAB_BIN="$REL/upkeep-lab"
KUBECTL="${KUBECTL:-$ROOT/.venv/bin/kubectl}"
SCEN="$BENCH_DIR/scenarios"

die() {
    echo "bench: $*" >&2
    exit 1
}

# Tools the benchmarks need: hyperfine, jq and GNU time from Debian packages, kubectl from
# scripts/setup.sh, and the release binaries.
bench_setup() {
    local need=()
    command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
    command -v jq >/dev/null 2>&1 || need+=(jq)
    [ -x /usr/bin/time ] || need+=(time)
    if [ ${#need[@]} -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and apt-get is not available: install them and re-run"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "bench: installing ${need[*]} with apt-get" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    [ -x "$KUBECTL" ] || "$ROOT/scripts/setup.sh"
    [ -x "$KUBECTL" ] || die "kubectl is missing at $KUBECTL (scripts/setup.sh installs it)"
    # BENCH_PACKAGES: the packages a single benchmark needs (each names its binary), so a
    # script run on its own builds and checks only those.
    local build=(--bins) bins=(upkeep-lab kubectl-skew kubectl-safedrain kubectl-upgrade_node) p
    if [ -n "${BENCH_PACKAGES:-}" ]; then
        build=()
        bins=()
        for p in $BENCH_PACKAGES; do
            build+=(-p "$p")
            bins+=("$p")
        done
    fi
    if [ "${BENCH_NO_BUILD:-0}" != 1 ] && [ -z "${BENCH_BIN_DIR:-}" ]; then
        (cd "$ROOT" && nice cargo build --release "${build[@]}" --locked >&2) || die "cargo build --release ${build[*]} failed"
    fi
    for b in "${bins[@]}"; do
        [ -x "$REL/$b" ] || die "missing $REL/$b (cargo build --release ${build[*]})"
    done
    # kubectl finds the plugins on PATH; kubectl skew finds kubectl there (its client version).
    export PATH="$REL:$(dirname "$KUBECTL"):$PATH"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# lab_start SCENARIO DIR: start a lab serving SCENARIO, kubeconfig DIR/kubeconfig; sets
# LAB_PID and LAB_KC, and LAB_READY_SECONDS (from the start until the kubeconfig exists and
# `kubectl get --raw /readyz` answers).
lab_start() {
    local scenario="$1" dir="$2"
    mkdir -p "$dir"
    LAB_KC="$dir/kubeconfig"
    rm -f "$LAB_KC"
    local t0
    t0=$(now)
    "$LAB_BIN" serve --scenario "$scenario" --listen 127.0.0.1:0 --kubeconfig "$LAB_KC" \
        >"$dir/lab.log" 2>&1 &
    LAB_PID=$!
    local deadline=$((SECONDS + ${LAB_START_TIMEOUT:-300}))
    until [ -s "$LAB_KC" ] && KUBECONFIG="$LAB_KC" "$KUBECTL" get --raw /readyz >/dev/null 2>&1; do
        kill -0 "$LAB_PID" 2>/dev/null || { cat "$dir/lab.log" >&2; die "the lab exited while starting ($scenario)"; }
        [ $SECONDS -lt $deadline ] || { lab_stop; die "the lab did not answer within ${LAB_START_TIMEOUT:-300} s ($scenario)"; }
        sleep 0.05
    done
    LAB_READY_SECONDS=$(elapsed "$t0")
}

# Peak resident set of the running lab, in MiB (VmHWM).
lab_peak_rss_mib() {
    awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$LAB_PID/status"
}

lab_stop() {
    if [ -n "${LAB_PID:-}" ] && kill -0 "$LAB_PID" 2>/dev/null; then
        kill -TERM "$LAB_PID"
        wait "$LAB_PID" 2>/dev/null || true
    fi
    LAB_PID=""
}

# kubectl against the running lab (KUBECONFIG: kubectl takes no flags before a plugin name).
kc() { KUBECONFIG="$LAB_KC" "$KUBECTL" "$@"; }

metrics_reset() {
    echo '{}' | kc create --raw /lab/v1/metrics/reset -f - >/dev/null
}

# The lab's request counters as JSON, without the lab's own endpoints (/lab/v1/...).
metrics_json() {
    kc get --raw /lab/v1/metrics | jq '[.requests[] | select((.subresource | startswith("/lab/")) | not)]'
}

# Total API requests in a metrics_json array.
metrics_total() { jq '[.[].count] | add // 0'; }

# "verb resource[/subresource]: count" lines for a metrics_json array.
metrics_lines() {
    jq -r 'group_by(.verb + " " + .resource + (if .resource != "" and .subresource != "" then "/" + .subresource elif .resource == "" then .subresource else "" end))
           | map({k: (.[0].verb + " " + (if .[0].resource == "" then .[0].subresource else .[0].resource + (if .[0].subresource != "" then "/" + .[0].subresource else "" end) end)), n: (map(.count) | add)})
           | .[] | "    \(.k): \(.n)"'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2] + a[NR/2+1]) / 2}'; }

# Wait until COMMAND succeeds (condition polling with a deadline, for setup only).
wait_for() {
    local what="$1" secs="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out after ${secs} s waiting for: $what"
        sleep 0.1
    done
}

header() {
    echo
    echo "== $1"
    echo "   date: $(date -u +%Y-%m-%dT%H:%MZ), machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
