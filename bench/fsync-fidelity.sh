#!/usr/bin/env bash
# Fidelity of etcdpulse's fsync probe against etcd's recommended fio command.
#
# Usage: bench/fsync-fidelity.sh [DIR]
#
# In DIR (default: a fresh directory under bench/tmp, on the repository's
# disk), runs PAIRS (default 5) interleaved pairs of
#   (a) fio --rw=write --ioengine=sync --fdatasync=1 --directory=DIR --size=22m --bs=2300 --name=mytest
#       in a fresh directory each time (fio would reuse a leftover file,
#       which measures a cheaper overwrite path), and
#   (b) the same number of write+fdatasync pairs through the agent's own
#       probe code (probes.FsyncProbe.Measure, via bench/fsyncprobe),
# alternating which of the two goes first. It prints each pair's sync
# latency p50 and p99, the ratios probe/fio, and their medians: the goal is
# both medians within 0.8-1.25.
#
# Then it runs ROUNDS (default 30) rounds shaped like the agent's defaults
# (16 syncs of 2300 B, a fresh 1 MiB file each) and reads the device's
# sectors written around them (/sys/class/block/DEV/stat), to estimate the
# device-level bytes per fdatasync and the bytes per hour at defaults. On a
# shared machine other writers add to that count: run it on a quiet disk.
#
# Needs fio (Debian: apt-get install fio) and go. Installs nothing.
set -euo pipefail

pairs=${PAIRS:-5}
rounds=${ROUNDS:-30}
size=22m
bs=2300
syncs=$(( (22 * 1024 * 1024) / bs )) # fio drops the last, partial block

root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v fio >/dev/null; then
	echo "fio not found: install it (Debian/Ubuntu: apt-get install fio) and run again" >&2
	exit 1
fi
if ! command -v go >/dev/null; then
	echo "go not found: the probe's side is built from this repository" >&2
	exit 1
fi

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
workdir fsync-fidelity "$@"

fstype=$(stat -f -c %T "$dir")
case $fstype in
tmpfs | ramfs | overlayfs | overlay)
	echo "$dir is on $fstype, where fdatasync reaches no disk: give a directory on the disk to measure" >&2
	exit 1
	;;
esac

# The block device under DIR, for its sectors-written counter.
src=$(df --output=source "$dir" | tail -n 1)
devname=$(basename "$(readlink -f "$src" 2>/dev/null || echo "$src")")
statfile=/sys/class/block/$devname/stat
sectors() {
	if [[ -r $statfile ]]; then awk '{print $7}' "$statfile"; else echo 0; fi
}

helper=$dir/fsyncprobe
(cd "$root" && go build -o "$helper" ./bench/fsyncprobe)

# field NAME LINE: the value of NAME=value in a helper line.
field() { sed -E "s/.*(^| )$1=([^ ]+).*/\2/" <<<"$2"; }

run_fio() { # pair number; prints a helper line
	local d=$dir/fio
	rm -rf "$d" && mkdir -p "$d"
	local s0 s1
	s0=$(sectors)
	fio --rw=write --ioengine=sync --fdatasync=1 --directory="$d" --size=$size --bs=$bs --name=mytest \
		--output-format=json --output="$dir/fio-$1.json" >/dev/null
	s1=$(sectors)
	rm -rf "$d"
	echo "$("$helper" -fio "$dir/fio-$1.json") dev_bytes=$(( (s1 - s0) * 512 ))"
}

run_probe() {
	local d=$dir/probe
	rm -rf "$d" && mkdir -p "$d"
	local s0 s1 out
	s0=$(sectors)
	out=$("$helper" -dir "$d" -syncs "$syncs" -write-size $bs -file-size $((22 * 1024 * 1024)))
	s1=$(sectors)
	rm -rf "$d"
	echo "$out dev_bytes=$(( (s1 - s0) * 512 ))"
}

us() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "fsync fidelity: $pairs pairs in $dir ($fstype on $devname), $syncs syncs of $bs B each"
echo "fio: fio --rw=write --ioengine=sync --fdatasync=1 --directory=DIR --size=$size --bs=$bs --name=mytest ($(fio --version))"
echo
printf '%-5s %-6s %10s %10s %10s %10s %8s %8s %12s %12s\n' pair first fio_p50us fio_p99us prb_p50us prb_p99us r_p50 r_p99 fio_B/sync prb_B/sync
r50s=() r99s=()
for i in $(seq 1 "$pairs"); do
	if (( i % 2 )); then
		first=fio
		f=$(run_fio "$i")
		p=$(run_probe)
	else
		first=probe
		p=$(run_probe)
		f=$(run_fio "$i")
	fi
	r50=$(ratio "$(field p50_ns "$p")" "$(field p50_ns "$f")")
	r99=$(ratio "$(field p99_ns "$p")" "$(field p99_ns "$f")")
	r50s+=("$r50") r99s+=("$r99")
	printf '%-5s %-6s %10s %10s %10s %10s %8s %8s %12s %12s\n' "$i" "$first" \
		"$(us "$(field p50_ns "$f")")" "$(us "$(field p99_ns "$f")")" \
		"$(us "$(field p50_ns "$p")")" "$(us "$(field p99_ns "$p")")" "$r50" "$r99" \
		$(( $(field dev_bytes "$f") / $(field syncs "$f") )) $(( $(field dev_bytes "$p") / $(field syncs "$p") ))
done
m50=$(printf '%s\n' "${r50s[@]}" | median)
m99=$(printf '%s\n' "${r99s[@]}" | median)
echo
echo "median ratio probe/fio: p50 $m50, p99 $m99 (goal: both within 0.8-1.25)"

# The agent's default rounds: 16 syncs of 2300 B in a fresh 1 MiB file.
# The helper reads the device's sectors written around each round; the
# median round keeps other writers on the device out of the estimate.
d=$dir/probe
mkdir -p "$d"
statarg=()
[[ -r $statfile ]] && statarg=(-diskstat "$statfile")
out=$("$helper" -dir "$d" -syncs 16 -write-size $bs -file-size $((1024 * 1024)) -rounds "$rounds" -pause 500ms "${statarg[@]}")
rm -rf "$d"
echo
echo "default rounds: $rounds × 16 syncs: p50 $(us "$(field p50_ns "$out")") µs, p99 $(us "$(field p99_ns "$out")") µs"
per_hour=$(( 16 * 3600 / 20 ))
echo "at defaults (16 syncs every 20 s = $per_hour syncs/h) the probe writes $(( per_hour * bs )) B/h of data"
if [[ ${#statarg[@]} -gt 0 ]]; then
	round=$(field dev_bytes_round_median "$out")
	per_sync=$(( round / 16 ))
	echo "device writes: median $round B per round = $per_sync B per fdatasync (file creation, preallocation and unlink included)"
	echo "  ≈ $(( per_hour * per_sync )) B/h at defaults ($(awk -v b=$(( per_hour * per_sync * 24 )) 'BEGIN { printf "%.2f", b / 1073741824 }') GiB/day)"
fi
