// Command fsyncprobe measures fdatasync latency through the agent's own
// fsync probe (probes.FsyncProbe.Measure), for bench/fsync-fidelity.sh. With
// -fio it instead reads a fio JSON result and prints the same summary for
// fio's sync latencies, so the script compares like with like.
//
//	fsyncprobe -dir DIR [-syncs 10029] [-write-size 2300] [-file-size 23068672] [-rounds 1] [-pause 0s] [-diskstat /sys/class/block/vda/stat]
//	fsyncprobe -fio RESULT.json
//
// Output: one line, "syncs=N p50_ns=X p99_ns=Y mean_ns=Z".
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdpulse/etcdpulse/probes"
)

func main() {
	dir := flag.String("dir", "", "directory to measure in (on the disk under test, not tmpfs)")
	syncs := flag.Int("syncs", 10029, "write+fdatasync pairs per round (22 MiB / 2300 B, as etcd's fio command)")
	writeSize := flag.Int("write-size", 2300, "bytes written before each fdatasync")
	fileSize := flag.Int64("file-size", 22<<20, "preallocated size of the probe file")
	rounds := flag.Int("rounds", 1, "rounds, each in a fresh file")
	pause := flag.Duration("pause", 0, "pause between rounds")
	fioJSON := flag.String("fio", "", "print the summary of this fio JSON result instead of measuring")
	statFile := flag.String("diskstat", "", "a block device's stat file (/sys/class/block/DEV/stat): print the median sectors written per round, in bytes")
	flag.Parse()

	var st stats
	var err error
	if *fioJSON != "" {
		st, err = fioStats(*fioJSON)
	} else {
		var ds []time.Duration
		var dev []int64
		if ds, dev, err = measure(*dir, *syncs, *writeSize, *fileSize, *rounds, *pause, *statFile); err == nil {
			st = statsOf(ds)
			st.devRound = median(dev)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fsyncprobe:", err)
		os.Exit(1)
	}
	fmt.Printf("syncs=%d p50_ns=%.0f p99_ns=%.0f mean_ns=%.0f", st.n, st.p50, st.p99, st.mean)
	if *statFile != "" {
		fmt.Printf(" dev_bytes_round_median=%d", st.devRound)
	}
	fmt.Println()
}

// stats summarises sync latencies in nanoseconds.
type stats struct {
	n              int
	p50, p99, mean float64
	devRound       int64 // median device bytes written per round
}

// measure runs rounds through the agent's probe code. With a stat file it
// reads the device's sectors written just before and after each round:
// windows that short keep other writers' noise out of the median.
func measure(dir string, syncs, writeSize int, fileSize int64, rounds int, pause time.Duration, statFile string) ([]time.Duration, []int64, error) {
	if dir == "" {
		return nil, nil, fmt.Errorf("-dir is required")
	}
	// The probe directory is its own reference directory: the device check
	// passes trivially, the filesystem check (tmpfs, overlay) still applies.
	p := probes.NewFsyncProbe(probes.FsyncOptions{
		Dir: dir, WALDir: dir, DataDir: dir,
		Syncs: syncs, WriteSize: writeSize, FileSize: fileSize,
		StallThreshold: time.Second,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	var all []time.Duration
	var dev []int64
	for i := range rounds {
		if i > 0 {
			time.Sleep(pause)
		}
		s0, err := sectors(statFile)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		ds, err := p.Measure(ctx)
		cancel()
		if err != nil {
			return nil, nil, err
		}
		s1, _ := sectors(statFile)
		all = append(all, ds...)
		dev = append(dev, (s1-s0)*512)
	}
	return all, dev, nil
}

// sectors reads the sectors-written field of a block device's stat file
// (Documentation/block/stat.rst: the 7th field, in 512-byte units).
func sectors(statFile string) (int64, error) {
	if statFile == "" {
		return 0, nil
	}
	data, err := os.ReadFile(statFile)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) < 7 {
		return 0, fmt.Errorf("%s: %d fields, want at least 7", statFile, len(f))
	}
	return strconv.ParseInt(f[6], 10, 64)
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// fioResult is the part of fio's JSON output read here.
type fioResult struct {
	Jobs []struct {
		Sync struct {
			LatNs struct {
				N          int                `json:"N"`
				Mean       float64            `json:"mean"`
				Percentile map[string]float64 `json:"percentile"`
			} `json:"lat_ns"`
		} `json:"sync"`
	} `json:"jobs"`
}

// fioStats returns fio's own sync latency figures: fio keeps percentiles
// of its latency histogram, not the samples.
func fioStats(path string) (stats, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return stats{}, err
	}
	var r fioResult
	if err := json.Unmarshal(data, &r); err != nil {
		return stats{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Jobs) == 0 || r.Jobs[0].Sync.LatNs.N == 0 {
		return stats{}, fmt.Errorf("%s: no sync latencies (jobs[0].sync.lat_ns)", path)
	}
	l := r.Jobs[0].Sync.LatNs
	p50, ok1 := l.Percentile["50.000000"]
	p99, ok2 := l.Percentile["99.000000"]
	if !ok1 || !ok2 {
		return stats{}, fmt.Errorf("%s: no 50th or 99th percentile in jobs[0].sync.lat_ns.percentile", path)
	}
	return stats{n: l.N, p50: p50, p99: p99, mean: l.Mean}, nil
}

// statsOf takes nearest-rank percentiles and the mean of the samples.
func statsOf(ds []time.Duration) stats {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return stats{}
	}
	pct := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return float64(s[max(i, 0)])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return stats{n: len(s), p50: pct(50), p99: pct(99), mean: float64(sum) / float64(len(s))}
}
