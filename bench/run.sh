#!/usr/bin/env bash
# Runs the benchmarks and prints each figure (BENCHMARKS.md records them).
# Usage: bench/run.sh [lab-scale|skew|readiness|drain-110|drain-pdb|drain-paced|upgrade]...   (default: all)
# Environment: BENCH_RUNS (hyperfine runs, default 10), BENCH_DRAIN_RUNS (fresh labs per
# drain tool, default 3), BENCH_NO_BUILD=1 (use the release binaries as they are),
# BENCH_BIN_DIR (take the binaries from that directory, no build).
# Not part of the test suite: nothing here is run by scripts/test.sh.
source "$(dirname "$0")/lib.sh"
bench_setup
export BENCH_SETUP_DONE=1
[ $# -gt 0 ] || set -- lab-scale skew readiness drain-110 drain-pdb drain-paced upgrade
for b in "$@"; do
    case "$b" in
    lab-scale) "$BENCH_DIR/lab-scale.sh" ;;
    skew) "$BENCH_DIR/skew.sh" ;;
    readiness) "$BENCH_DIR/readiness.sh" ;;
    drain-110 | drain-pdb) "$BENCH_DIR/drain.sh" "$b" ;;
    drain-paced) "$BENCH_DIR/drain-paced.sh" ;;
    upgrade) "$BENCH_DIR/upgrade.sh" ;;
    *) die "unknown benchmark $b; known: lab-scale, skew, readiness, drain-110, drain-pdb, drain-paced, upgrade" ;;
    esac
done
