#!/usr/bin/env bash
# resources.sh: the agent's CPU and memory at default settings, beside a
# real etcd cluster of etcd processes on loopback, scraped every 15 s as
# Prometheus would. The figures size the chart's requests and limits
# (docs/benchmarks.md, "Resources at defaults").
#
#   bench/resources.sh [MEMBERS...]    default: 3 5
#
# Environment: DURATION (seconds measured, default 300), WARMUP (seconds
# before measuring, default 30), ETCD (default bin/etcd), ETCDPULSE
# (default: built into the work directory with make's settings).
# Needs bin/etcd (make tools) and curl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"

DURATION=${DURATION:-300}
WARMUP=${WARMUP:-30}
ETCD=${ETCD:-$root/bin/etcd}
members_list=("$@")
[[ ${#members_list[@]} -gt 0 ]] || members_list=(3 5)

workdir resources
if [[ -z ${ETCDPULSE:-} ]]; then
	ETCDPULSE=$dir/etcdpulse
	(cd "$root" && CGO_ENABLED=0 go build -o "$ETCDPULSE" ./cmd/etcdpulse)
fi
hz=$(getconf CLK_TCK)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap 'cleanup; rm -rf "$dir"' EXIT

# cpu_ticks PID: user+system clock ticks the process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# status_kb PID FIELD: a /proc/PID/status field in kB.
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

printf '%-8s %10s %10s %12s %12s %12s\n' members cpu_mean cpu_max10s rss_end_MiB rss_peak_MiB heap_MiB
for n in "${members_list[@]}"; do
	base=$((21000 + n * 100))
	cluster=""
	for ((i = 0; i < n; i++)); do
		cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 10 + i))"
	done
	for ((i = 0; i < n; i++)); do
		"$ETCD" --name "m$i" --data-dir "$dir/$n/m$i" \
			--listen-client-urls "http://127.0.0.1:$((base + i))" \
			--advertise-client-urls "http://127.0.0.1:$((base + i))" \
			--listen-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
			--initial-advertise-peer-urls "http://127.0.0.1:$((base + 10 + i))" \
			--listen-metrics-urls "http://127.0.0.1:$((base + 20 + i))" \
			--initial-cluster "$cluster" --initial-cluster-token "res-$n" \
			--log-level error >"$dir/etcd-$n-$i.log" 2>&1 &
		pids+=($!)
	done
	agent_port=$((base + 50))
	# Defaults but for the addresses: every probe on, process metrics
	# from the PID found by name, etcd's own metrics read.
	"$ETCDPULSE" run --etcd.endpoints "http://127.0.0.1:$base" \
		--etcd.data-dir "$dir/$n/m0" --etcd.metrics-url "http://127.0.0.1:$((base + 20))/metrics" \
		--web.listen-address "127.0.0.1:$agent_port" >"$dir/agent-$n.log" 2>&1 &
	agent=$!
	pids+=("$agent")
	url="http://127.0.0.1:$agent_port"
	for _ in $(seq 600); do
		curl -fsS "$url/readyz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "$url/readyz" >/dev/null || { echo "agent not ready; log:" >&2; cat "$dir/agent-$n.log" >&2; exit 1; }
	sleep "$WARMUP"
	start_ticks=$(cpu_ticks "$agent")
	prev=$start_ticks
	max10=0
	heap=0
	for ((s = 0; s < DURATION; s += 10)); do
		# A scrape every 15 s, as Prometheus at the chart's interval.
		if ((s % 15 == 0 || s % 15 == 5)); then
			h=$(curl -fsS "$url/metrics" | awk '$1 == "go_memstats_heap_inuse_bytes" {print $2}')
			heap=$(awk -v a="$heap" -v b="$h" 'BEGIN {print (b > a) ? b : a}')
		fi
		sleep 10
		now=$(cpu_ticks "$agent")
		max10=$(awk -v a="$max10" -v d=$((now - prev)) -v hz="$hz" 'BEGIN {c = d / hz / 10; print (c > a) ? c : a}')
		prev=$now
	done
	end_ticks=$(cpu_ticks "$agent")
	awk -v n="$n" -v d=$((end_ticks - start_ticks)) -v hz="$hz" -v t="$DURATION" -v m="$max10" \
		-v rss="$(status_kb "$agent" VmRSS)" -v hwm="$(status_kb "$agent" VmHWM)" -v heap="$heap" \
		'BEGIN {printf "%-8s %9.1fm %9.1fm %12.1f %12.1f %12.1f\n", n, d / hz / t * 1000, m * 1000, rss / 1024, hwm / 1024, heap / 1048576}'
	cleanup
	pids=()
done
