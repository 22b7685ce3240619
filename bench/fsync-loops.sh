#!/usr/bin/env bash
# Why the fsync probe yields to the Go scheduler (probes.fsyncYieldEvery):
# the same write(2300 B)+fdatasync loop in C, in Go as is ("plain"), in Go
# with RawSyscall ("raw", no scheduler involvement) and in Go with a
# runtime.Gosched every 1 ms ("yield"), taking turns, ROUNDS (default 5)
# times, each in a fresh preallocated file. Prints each run, then the
# median p50 and p99 of each variant.
#
# Usage: bench/fsync-loops.sh [DIR]   (DIR on the disk under test, not tmpfs)
# Needs gcc and go. Installs nothing.
set -euo pipefail
rounds=${ROUNDS:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
workdir fsync-loops "$@"
gcc -O2 -o "$dir/loop-c" "$root/bench/fsyncloop/c/loop.c" -lm
(cd "$root" && go build -o "$dir/loop-go" ./bench/fsyncloop)
mkdir -p "$dir/run"
out=$dir/results
: >"$out"
for i in $(seq 1 "$rounds"); do
	for v in c plain raw yield; do
		if [[ $v == c ]]; then "$dir/loop-c" "$dir/run"; else "$dir/loop-go" -dir "$dir/run" -mode "$v"; fi
	done | tee -a "$out"
done
echo
echo "medians over $rounds runs (µs):"
# col VARIANT FIELD: the median of FIELD (p50_us or p99_us) over VARIANT's runs.
col() {
	awk -v v="$1" -v f="$2" '$1 == v { for (i = 2; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) }' "$out" |
		sort -g | awk '{ x[NR] = $1 } END { print (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}
for v in c go-plain go-raw go-yield; do
	printf '%-9s p50 %7.1f  p99 %7.1f\n' "$v" "$(col "$v" p50_us)" "$(col "$v" p99_us)"
done
