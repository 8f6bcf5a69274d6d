#!/usr/bin/env bash
# KAI-Scheduler's BenchmarkReclaimLargeJobs and kai on the same shape, interleaved on one machine.
#
#   bash bench/compare_kai_reclaim.sh /path/to/KAI-Scheduler [ROUNDS]
#
# /path/to/KAI-Scheduler: a checkout of github.com/kai-scheduler/KAI-Scheduler (docs/benchmarks.md
# used commit d5bc503a146317e51037d89775d77172c6d12f71). Needs Go. Builds the benchmark's test
# binary twice: as is (pending gang of N/2 8-GPU tasks) and with N/10 tasks (the shape before
# July 2026) in a scratch copy, then per round and shape runs KAI once (-test.benchtime 1x) and
# kai once (bench/bench_reclaim.py: state load + session open + reclaim), and prints seconds.
set -euo pipefail
KAI_SRC=${1:?usage: $0 /path/to/KAI-Scheduler [rounds]}
ROUNDS=${2:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PKG=pkg/scheduler/actions/integration_tests/reclaim
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$KAI_SRC" "$WORK/n2"
cp -r "$KAI_SRC" "$WORK/n10"
sed -i 's|PendingJobTasks:\( *\)numNodes / 2,|PendingJobTasks:\1numNodes / 10,|' "$WORK/n10/$PKG/reclaim_benchmark_test.go"
grep -q "numNodes / 10," "$WORK/n10/$PKG/reclaim_benchmark_test.go" || { echo "N/10 edit did not apply" >&2; exit 1; }
for v in n2 n10; do (cd "$WORK/$v" && go test -c -o "$WORK/$v.test" "./$PKG/"); done
echo "round nodes shape KAI_s kai_s load"
for round in $(seq "$ROUNDS"); do
  for shape in "500 2" "1000 2" "500 10" "1000 10"; do
    set -- $shape
    ns=$(cd "$WORK/n$2/$PKG" && "$WORK/n$2.test" -test.run '^$' -test.bench "BenchmarkReclaimLargeJobs_${1}Node\$" \
           -test.benchtime 1x 2>/dev/null | awk '/^BenchmarkReclaimLargeJobs/{print $3}')
    k=$(cd "$REPO" && PYTHONPATH="$REPO:$REPO/bench" python3 bench/bench_reclaim.py --nodes "$1" --div "$2")
    echo "$round $1 N/$2 $(awk -v n="$ns" 'BEGIN{printf "%.3f", n/1e9}') $k $(cut -d' ' -f1 /proc/loadavg)"
  done
done
