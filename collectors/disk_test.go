package collectors

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/etcdpulse/etcdpulse/probes"
)

type fixedFsync probes.FsyncState

func (f fixedFsync) State() probes.FsyncState { return probes.FsyncState(f) }

// The stall is computed at scrape time from the outstanding operation's
// start, so a sync that never returns still shows.
func TestDiskCollector(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		name  string
		state probes.FsyncState
		want  string
	}{
		{"measuring, idle", probes.FsyncState{StallThreshold: time.Second, WrittenBytes: 36800}, `
etcdpulse_disk_fsync_stalled 0
etcdpulse_disk_fsync_stalled_seconds 0
etcdpulse_disk_fsync_written_bytes_total 36800
`},
		{"a sync in flight, under the threshold", probes.FsyncState{Op: "fdatasync", OpStart: now.Add(-250 * time.Millisecond), StallThreshold: time.Second}, `
etcdpulse_disk_fsync_stalled 0
etcdpulse_disk_fsync_stalled_seconds 0.25
etcdpulse_disk_fsync_written_bytes_total 0
`},
		{"a sync hung past the threshold", probes.FsyncState{Op: "fdatasync", OpStart: now.Add(-90 * time.Second), StallThreshold: time.Second, WrittenBytes: 2300}, `
etcdpulse_disk_fsync_stalled 1
etcdpulse_disk_fsync_stalled_seconds 90
etcdpulse_disk_fsync_written_bytes_total 2300
`},
		{"refused", probes.FsyncState{Refused: probes.RefusedTmpfs, StallThreshold: time.Second}, `
etcdpulse_disk_fsync_probe_refused{reason="tmpfs"} 1
etcdpulse_disk_fsync_stalled 0
etcdpulse_disk_fsync_stalled_seconds 0
etcdpulse_disk_fsync_written_bytes_total 0
`},
	} {
		t.Run(c.name, func(t *testing.T) {
			col := NewDiskCollector(fixedFsync(c.state))
			col.now = func() time.Time { return now }
			compareMetrics(t, col, []Metric{FsyncStalled, FsyncStalledSeconds, FsyncRefused, FsyncWritten}, c.want)
		})
	}
}

func TestFsyncHistogram(t *testing.T) {
	h := NewFsyncHistogram()
	h.WithLabelValues().Observe(0.0002)
	problems, err := promlint.New(bytes.NewReader(gather(t, h))).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	body := string(gather(t, h))
	for _, want := range []string{`le="5e-05"`, `le="6.5536"`, "# HELP " + FsyncDuration.Name + " " + FsyncDuration.Help} {
		if !strings.Contains(body, want) {
			t.Errorf("histogram output lacks %q:\n%s", want, body)
		}
	}
}
