#!/usr/bin/env bash
# write-throughput.sh: etcd's write throughput with one etcdpulse agent per
# member at default settings against without, in alternating windows of one
# run (BenchmarkWriteThroughput; docs/benchmarks.md, "Write throughput with
# the agent"). The agent must cost etcd under 1 %: ratio-median >= 0.99.
#
#   bench/write-throughput.sh [PAIRS]    default: 10 pairs of windows
#
# Environment: ETCDPULSE_BENCH_WINDOW (one window, default 10s), ETCD
# (default bin/etcd). Needs bin/etcd (make tools).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pairs=${1:-10}
ETCD=${ETCD:-$root/bin/etcd}
cd "$root"
ETCDPULSE_ETCD_BIN=$ETCD CGO_ENABLED=0 go test -run '^$' -bench '^BenchmarkWriteThroughput$' \
	-benchtime "${pairs}x" -timeout 60m ./agent/
