#!/usr/bin/env bash
# detection-ab.sh OLD_REV [ROUNDS] [BENCHTIME]: BenchmarkDetection of
# OLD_REV and of the working tree, interleaved (old, new, old, new, ...)
# so that both meet the same machine noise; prints each round's median
# detection time per fault and side, and the ratio of the sides' means of
# those medians (new/old).
# Needs bin/etcd (make tools). Defaults: 2 rounds of 3 iterations each.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
old=${1:?usage: bench/detection-ab.sh OLD_REV [ROUNDS] [BENCHTIME]}
rounds=${2:-2}
benchtime=${3:-3x}
workdir detection-ab
git -C "$root" worktree add -q --detach "$dir/old" "$old"
trap 'git -C "$root" worktree remove --force "$dir/old"; rm -rf "$dir"' EXIT
(cd "$dir/old" && go test -c -o "$dir/old.test" ./agent)
(cd "$root" && go test -c -o "$dir/new.test" ./agent)
export ETCDPULSE_ETCD_BIN=${ETCDPULSE_ETCD_BIN:-$root/bin/etcd}
for i in $(seq "$rounds"); do
	for which in old new; do
		src=$root
		[[ $which == old ]] && src=$dir/old
		echo "== round $i: $which" >&2
		(cd "$src/agent" && "$dir/$which.test" -test.run '^$' -test.bench BenchmarkDetection \
			-test.benchtime "$benchtime" -test.timeout 60m) | tee "$dir/$which.$i.txt" >&2
	done
done
# Medians of each fault (the s-median/detect metric), per side.
awk '
FNR == 1 { side = (FILENAME ~ /\/old\./) ? "old" : "new" }
/^BenchmarkDetection\// {
	name = $1; sub(/^BenchmarkDetection\//, "", name); sub(/-[0-9]+$/, "", name)
	for (i = 2; i < NF; i++) if ($(i+1) == "s-median/detect") { v[side, name] = v[side, name] " " $i; names[name] = 1 }
}
END {
	printf "%-28s %-20s %-20s %s\n", "fault", "old medians (s)", "new medians (s)", "new/old"
	for (n in names) {
		split(v["old", n], o, " "); split(v["new", n], w, " ")
		so = 0; for (k in o) so += o[k]; sw = 0; for (k in w) sw += w[k]
		printf "%-28s %-20s %-20s %.3f\n", n, v["old", n], v["new", n], (sw / length(w)) / (so / length(o))
	}
}' "$dir"/old.*.txt "$dir"/new.*.txt
