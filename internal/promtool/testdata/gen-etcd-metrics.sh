#!/usr/bin/env bash
# Regenerates etcd-metrics.txt: every metric family a real 3-member etcd
# cluster (the version pinned in go.mod) exports after some traffic.
# Usage: internal/promtool/testdata/gen-etcd-metrics.sh [path/to/etcd]
set -euo pipefail
cd "$(dirname "$0")"
etcd=${1:-../../../bin/etcd}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
cluster="g0=http://127.0.0.1:32380,g1=http://127.0.0.1:32382,g2=http://127.0.0.1:32384"
for i in 0 1 2; do
  c=$((32379 + 2 * i)); p=$((c + 1))
  "$etcd" --name g$i --data-dir "$dir/g$i" --log-level error \
    --listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
    --listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
    --initial-cluster "$cluster" --initial-cluster-state new --metrics extensive \
    >"$dir/g$i.log" 2>&1 &
done
for _ in $(seq 100); do curl -sf http://127.0.0.1:32379/health >/dev/null && break; sleep 0.2; done
for k in $(seq 50); do curl -sf -X POST http://127.0.0.1:32379/v3/kv/put -d '{"key":"Zm9v","value":"YmFy"}' >/dev/null; done
sleep 35 # etcd records peer round-trip times every 30 s
{
  echo "# etcd's own metric families (etcd $("$etcd" --version | head -1 | awk '{print $3}'), from a 3-member"
  echo "# cluster with --metrics=extensive; made by gen-etcd-metrics.sh"
  for p in 32379 32381 32383; do curl -sf http://127.0.0.1:$p/metrics; done |
    grep -v '^#' | sed -E 's/[{ ].*//' | sort -u
} > etcd-metrics.txt
wc -l etcd-metrics.txt
