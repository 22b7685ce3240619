package probes

import (
	"archive/zip"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// localTarget is a target pinned to the cluster's first member.
func localTarget(t testing.TB, c *etcdtest.Cluster) *Target {
	t.Helper()
	ts, err := NewTargets(c.ClientURLs()[:1], ClientConfig{TLS: c.ClientTLSConfig(), DialTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	return ts.Local()
}

// backupDir runs the probe once on a directory and returns what it found.
func backupDir(t *testing.T, p *BackupProbe, tg *Target, dir string) BackupDir {
	t.Helper()
	p.Dirs = []string{dir}
	err := p.Run(snapCtx(t), tg)
	d, ok := p.Dir(dir)
	if !ok {
		t.Fatalf("no result for %s (run: %v)", dir, err)
	}
	if (err != nil) != (d.Err != "") {
		t.Fatalf("run error %v, directory error %q", err, d.Err)
	}
	return d
}

func wantStatus(t *testing.T, d BackupDir, status string) *BackupSnapshot {
	t.Helper()
	if d.Newest == nil {
		t.Fatalf("%s: no snapshot (%s)", d.Dir, d.Err)
	}
	s := d.Newest
	t.Logf("%s: %s %s: %s (revision %d, %s)", filepath.Base(d.Dir), s.Name, s.Status, s.Reason, s.Revision, s.CheckDuration)
	if s.Status != status {
		t.Fatalf("%s: status %s (%s), want %s", s.Name, s.Status, s.Reason, status)
	}
	return s
}

// oneFile makes a directory holding one file, a copy of data.
func oneFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Real snapshots taken through the client API, checked against the live
// cluster: the snapshot itself (verified, even after the member compacted
// below its revision); a truncated copy and a copy with a flipped byte
// (corrupt); a snapshot of another cluster (mismatched, by hash, and
// ahead of the cluster's revision); an old snapshot whose revision has
// since been compacted (unverifiable); compressed copies as k3s writes
// them (zip) and gzip's, intact and damaged; an empty and a missing
// directory.
func TestBackupProbe(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := c.Client(t)
	tg := localTarget(t, c)
	work := t.TempDir()

	history(t, cli, "/old/", 20)
	old := saveSnapshot(t, cli, work, "old.db")
	history(t, cli, "/k/", 40)
	compact(t, cli, lastRevision(t, cli)-5)
	history(t, cli, "/n/", 20)
	snap := saveSnapshot(t, cli, work, "etcd-snapshot-node1-1717000000")
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	history(t, cli, "/later/", 10)
	info, err := SnapshotRevisions(snap)
	if err != nil {
		t.Fatal(err)
	}
	compact(t, cli, info.Revision-1)

	// Another cluster, never compacted, with more revisions: this
	// cluster's old snapshot is compared with its hash there, and its own
	// snapshot is ahead of this cluster's revision.
	other := etcdtest.Start(t, etcdtest.Options{})
	history(t, other.Client(t), "/k/", 400)
	aheadSnap := saveSnapshot(t, other.Client(t), work, "ahead.db")
	otherTarget := localTarget(t, other)

	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flipped := append([]byte(nil), data...)
	flipped[len(data)/3] ^= 1

	p := &BackupProbe{Logger: slog.New(slog.DiscardHandler)}
	t.Run("verified", func(t *testing.T) {
		s := wantStatus(t, backupDir(t, p, tg, oneFile(t, "etcd-snapshot-node1-1717000000", data)), BackupVerified)
		if s.Revision != info.Revision || s.Size != int64(len(data)) || !s.TimeFromName || s.Time.Unix() != 1717000000 {
			t.Errorf("snapshot %+v: want revision %d, size %d, time 1717000000 from its name", s, info.Revision, len(data))
		}
	})
	t.Run("truncated", func(t *testing.T) {
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db", data[:len(data)-5000])), BackupCorrupt)
	})
	t.Run("flipped byte", func(t *testing.T) {
		// Wherever the byte falls past the meta pages (free space, a
		// page header, a key, a value), the reason is the checksum.
		for i := 1; i <= 7; i++ {
			at := 8192 + (len(data)-8192-32)*i/8
			f := append([]byte(nil), data...)
			f[at] ^= 1
			s := wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db", f)), BackupCorrupt)
			if !strings.Contains(s.Reason, "sha256") {
				t.Errorf("byte %d of %d flipped: reason %q does not name the checksum", at, len(data), s.Reason)
			}
		}
	})
	t.Run("other cluster", func(t *testing.T) {
		s := wantStatus(t, backupDir(t, p, otherTarget, oneFile(t, "s.db", read(old))), BackupMismatched)
		if !strings.Contains(s.Reason, "hashes") {
			t.Errorf("reason %q", s.Reason)
		}
	})
	t.Run("other cluster ahead", func(t *testing.T) {
		s := wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db", read(aheadSnap))), BackupMismatched)
		if !strings.Contains(s.Reason, "ahead") {
			t.Errorf("reason %q", s.Reason)
		}
	})
	t.Run("compacted", func(t *testing.T) {
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db", read(old))), BackupUnverifiable)
	})
	t.Run("zip", func(t *testing.T) {
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "etcd-snapshot-node1-1717000000.zip", zipped(t, "etcd-snapshot-node1-1717000000", data))), BackupCompressed)
	})
	t.Run("zip damaged", func(t *testing.T) {
		z := zipped(t, "s", data)
		z[len(z)/2] ^= 0xff
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db.zip", z)), BackupCorrupt)
	})
	t.Run("gzip of a flipped byte", func(t *testing.T) {
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db.gz", gzipped(t, flipped))), BackupCorrupt)
	})
	t.Run("gzip", func(t *testing.T) {
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db.gz", gzipped(t, data))), BackupCompressed)
	})
	t.Run("zstd", func(t *testing.T) {
		wantStatus(t, backupDir(t, p, tg, oneFile(t, "s.db.zst", data)), BackupUnchecked)
	})
	t.Run("empty directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "snapshot.db.part"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		d := backupDir(t, p, tg, dir)
		if d.Newest != nil || d.Snapshots != 0 || !strings.Contains(d.Err, "backups.dirs: "+dir+" holds no snapshot file") {
			t.Fatalf("empty directory: %+v", d)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "absent")
		d := backupDir(t, p, tg, dir)
		if d.Newest != nil || !strings.Contains(d.Err, "backups.dirs: open "+dir+": no such file or directory") {
			t.Fatalf("missing directory: %+v", d)
		}
	})
}

// A snapshot is read once: the next runs find it in the cache by name,
// size and modification time, and a new newest snapshot is checked.
func TestBackupProbeChecksOnce(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := c.Client(t)
	tg := localTarget(t, c)
	dir := t.TempDir()
	history(t, cli, "/k/", 10)
	saveSnapshot(t, cli, dir, "etcd-snapshot-node1-1717000000")
	p := &BackupProbe{Logger: slog.New(slog.DiscardHandler)}
	first := wantStatus(t, backupDir(t, p, tg, dir), BackupVerified)
	again := wantStatus(t, backupDir(t, p, tg, dir), BackupVerified)
	if !again.CheckedAt.Equal(first.CheckedAt) {
		t.Errorf("checked again at %s (first at %s)", again.CheckedAt, first.CheckedAt)
	}
	history(t, cli, "/k/", 10)
	saveSnapshot(t, cli, dir, "etcd-snapshot-node1-1717003600")
	next := wantStatus(t, backupDir(t, p, tg, dir), BackupVerified)
	if next.Name != "etcd-snapshot-node1-1717003600" || next.Revision <= first.Revision {
		t.Errorf("newest %s at revision %d, want the new snapshot after %d", next.Name, next.Revision, first.Revision)
	}
}

// A check that runs out of time is unchecked, says so, and is not tried
// again at the next run (it would read the file again and again).
func TestBackupProbeOutOfTime(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := c.Client(t)
	tg := localTarget(t, c)
	dir := t.TempDir()
	history(t, cli, "/k/", 10)
	saveSnapshot(t, cli, dir, "snapshot.db")
	// 4 KiB a second: the trailer's read of the file (tens of KiB)
	// outlasts the run's deadline.
	p := &BackupProbe{Dirs: []string{dir}, Limiter: rate.NewLimiter(4096, chunk), Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(snapCtx(t), 2*time.Second)
	defer cancel()
	if err := p.Run(ctx, tg); err != nil {
		t.Fatal(err)
	}
	d, _ := p.Dir(dir)
	s := wantStatus(t, d, BackupUnchecked)
	if !strings.Contains(s.Reason, "backups.timeout") || s.Revision == 0 {
		t.Fatalf("reason %q, revision %d: want the timeout named, the revision read", s.Reason, s.Revision)
	}
	if err := p.Run(snapCtx(t), tg); err != nil {
		t.Fatal(err)
	}
	again, _ := p.Dir(dir)
	if !again.Newest.CheckedAt.Equal(s.CheckedAt) || again.Newest.Status != BackupUnchecked {
		t.Errorf("checked again at once: %+v", again.Newest)
	}
}

func zipped(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var b strings.Builder
	z := zip.NewWriter(&b)
	w, err := z.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b strings.Builder
	g := gzip.NewWriter(&b)
	if _, err := g.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// The newest snapshot is chosen by the time in the names where they have
// one (k3s, RKE2, a CronJob's date), else by modification time; hidden,
// partial and non-snapshot files are left out, and so are files written
// within the settle time.
func TestListSnapshots(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		files map[string]time.Duration // name: modified this long before now
		want  string
		count int
	}{
		{"k3s by name, not mtime", map[string]time.Duration{
			"etcd-snapshot-server-1-1748736000":     time.Minute, // 2025-06-01 00:00
			"etcd-snapshot-server-1-1748779200":     time.Hour,   // 2025-06-01 12:00
			"on-demand-server-1-1748750400.zip":     2 * time.Hour,
			"etcd-snapshot-server-1-1748692800.zip": 3 * time.Hour,
		}, "etcd-snapshot-server-1-1748779200", 4},
		{"cronjob dates", map[string]time.Duration{
			"etcd-2025-05-31T02:00:00Z.db": time.Minute,
			"etcd-2025-06-01T02:00:00Z.db": time.Hour,
			"etcd-20250530-020000.db":      2 * time.Minute,
		}, "etcd-2025-06-01T02:00:00Z.db", 3},
		{"mtime without dates", map[string]time.Duration{
			"snapshot.db":      time.Hour,
			"snapshot-prev.db": 2 * time.Hour,
			".hidden.db":       time.Minute,
			"snapshot.db.part": time.Minute,
			"notes.txt":        time.Minute,
			"checksums.sha256": time.Minute,
			"fresh.db":         10 * time.Second, // still being written
		}, "snapshot.db", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, age := range tc.files {
				path := filepath.Join(dir, name)
				if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(path, now.Add(-age), now.Add(-age)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Mkdir(filepath.Join(dir, "sub.db"), 0o700); err != nil {
				t.Fatal(err)
			}
			files, err := ListSnapshots(dir, now, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != tc.count || files[len(files)-1].Name != tc.want {
				var names []string
				for _, f := range files {
					names = append(names, f.Name)
				}
				t.Fatalf("listed %v, want %d files, the newest %s", names, tc.count, tc.want)
			}
		})
	}
}

func TestSnapshotNameTime(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]string{
		"etcd-snapshot-server-1-1748736000":    "2025-06-01T00:00:00Z",
		"on-demand-ip-10-0-0-1-1748736000":     "2025-06-01T00:00:00Z",
		"etcd-snapshot-node-1748736000.db":     "2025-06-01T00:00:00Z",
		"etcd-2025-05-31T02:00:00Z.db":         "2025-05-31T02:00:00Z",
		"etcd-20250530-020000":                 "2025-05-30T02:00:00Z",
		"backup_2025-05-30_02-15":              "2025-05-30T02:15:00Z",
		"etcd-202505300215.db":                 "2025-05-30T02:15:00Z",
		"snapshot.db":                          "",
		"etcd-snapshot-node-9999999999":        "", // 2286: not plausible
		"etcd-2025-13-01T02:00:00Z.db":         "", // no month 13
		"etcd-snapshot-node2025-1748736000.db": "2025-06-01T00:00:00Z",
	}
	for name, want := range cases {
		got, ok := SnapshotNameTime(name, now)
		s := ""
		if ok {
			s = got.Format(time.RFC3339)
		}
		if s != want {
			t.Errorf("SnapshotNameTime(%q) = %q, want %q", name, s, want)
		}
	}
}

// The trailer check streams: the sum of everything but the last 32
// bytes, whatever the writes' sizes.
func TestTrailerSum(t *testing.T) {
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	sum := sha256.Sum256(data)
	full := append(append([]byte(nil), data...), sum[:]...)
	for _, step := range []int{1, 31, 32, 33, 1000, len(full)} {
		var w trailerSum
		for i := 0; i < len(full); i += step {
			w.Write(full[i:min(i+step, len(full))])
		}
		if !w.ok() || w.n != int64(len(full)) {
			t.Errorf("writes of %d: ok %v, n %d", step, w.ok(), w.n)
		}
	}
}
