package probes

import (
	"archive/zip"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/time/rate"
)

// ProbeBackups is the backup probe's name.
const ProbeBackups = "backups"

// The statuses of a directory's newest snapshot: the values of the status
// label.
const (
	// BackupVerified: intact, and its store hashes as the cluster's at
	// its revision (HashKV).
	BackupVerified = "verified"
	// BackupUnverifiable: intact, but the cluster has compacted its
	// revision, so no hash can be compared.
	BackupUnverifiable = "unverifiable"
	// BackupMismatched: intact, but its store differs from the
	// cluster's at its revision, or its revision is ahead of the
	// cluster's: a snapshot of another cluster, or of history the
	// cluster no longer has (it was restored from an older one).
	BackupMismatched = "mismatched"
	// BackupCorrupt: its sha256 trailer does not match, it is truncated,
	// bolt cannot read it, or its compressed container is damaged.
	BackupCorrupt = "corrupt"
	// BackupCompressed: a zip, gzip or bzip2 file whose container and
	// sha256 trailer check out; its store is not hashed (that would need
	// the whole database decompressed on disk).
	BackupCompressed = "compressed"
	// BackupUnchecked: not (yet) checked: the cluster did not answer,
	// refused HashKV, was not healthy, the check ran out of time, or the
	// file is compressed in a format the agent does not read.
	BackupUnchecked = "unchecked"
)

// BackupStatuses lists the statuses, for documentation and tests.
var BackupStatuses = []string{BackupVerified, BackupUnverifiable, BackupMismatched, BackupCorrupt, BackupCompressed, BackupUnchecked}

// BackupSnapshot is a directory's newest snapshot and what its check
// found.
type BackupSnapshot struct {
	// Name is the file's name in its directory: for logs and check
	// lines, never a label.
	Name    string
	Size    int64
	ModTime time.Time
	// Time is when the snapshot was taken: from its name where the name
	// has a date (k3s and RKE2's unix time, a CronJob's date and time),
	// else its modification time.
	Time         time.Time
	TimeFromName bool
	// Compression is the compressed format by the name's suffix ("zip",
	// "gz", ...), "" for a plain file.
	Compression string
	// Status is one of BackupStatuses, Reason why.
	Status, Reason string
	// Revision and CompactRevision are the snapshot store's; 0 when not
	// read (compressed, corrupt).
	Revision, CompactRevision int64
	// CheckedAt is when the last check of it ended, CheckDuration how
	// long it took; zero before a check.
	CheckedAt     time.Time
	CheckDuration time.Duration

	// What the steps of an unfinished check learnt: the snapshot's
	// revisions and the cluster's hash at its revision; retryAt is when
	// the check is tried again.
	info    *SnapshotInfo
	live    *liveHash
	retryAt time.Time
}

// final: the check has its answer for this file; it is not checked again.
func (s *BackupSnapshot) final() bool { return s.Status != "" && s.Status != BackupUnchecked }

// BackupDir is what the probe found in a directory.
type BackupDir struct {
	Dir string
	// Err says why the directory gave no snapshot (unreadable, empty);
	// "" when it did.
	Err string
	// Snapshots counts its snapshot files.
	Snapshots int
	// Newest is its newest snapshot; nil when none.
	Newest *BackupSnapshot
}

// BackupProbe watches directories of etcd snapshots (etcdctl snapshot
// save's files, k3s and RKE2's etcd-snapshot-<node>-<unix time>, a
// CronJob's dated files). At each run it lists each directory, and checks
// its newest snapshot once, the first time it sees it (cached by name,
// size and modification time): integrity (the sha256 trailer, read
// sequentially at ReadRate, then the bolt database, opened read-only),
// then restorability: the snapshot's HashKV at its revision against the
// cluster's, asked of the member the run targets. A scan costs a directory
// listing; the read of a large file happens once per new snapshot.
type BackupProbe struct {
	Dirs []string
	// Limiter paces reads of snapshot files (nil: no limit).
	Limiter *rate.Limiter
	// Settle: files modified more recently are left alone, as still being
	// written.
	Settle time.Duration
	// View returns the cluster as the last round saw it; the cluster is
	// asked for a hash only while every member is healthy (a HashKV reads
	// the member's whole store). Nil: always.
	View   func() View
	Logger *slog.Logger

	// running holds one run at a time: the runner keeps a run single-
	// flight per member, and the member a run targets can change.
	running sync.Mutex

	mu   sync.Mutex
	dirs map[string]*BackupDir
}

// Backup check pacing.
const (
	// backupRetryAfterDeadline: a check that ran out of time is tried
	// again this much later, not at each run (it would read the file
	// again and again).
	backupRetryAfterDeadline = time.Hour
)

// Name implements Probe.
func (p *BackupProbe) Name() string { return ProbeBackups }

// Dir returns what the probe last found in dir; ok false before a run.
func (p *BackupProbe) Dir(dir string) (BackupDir, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.dirs[dir]
	if !ok {
		return BackupDir{}, false
	}
	out := *d
	if d.Newest != nil {
		n := *d.Newest
		out.Newest = &n
	}
	return out, true
}

// Results returns what the probe last found in each directory it ran on,
// in the order of Dirs.
func (p *BackupProbe) Results() []BackupDir {
	var out []BackupDir
	for _, dir := range p.Dirs {
		if d, ok := p.Dir(dir); ok {
			out = append(out, d)
		}
	}
	return out
}

// Run implements Probe: it lists every directory and checks each one's
// newest snapshot where it has not been checked yet. A directory that
// cannot be read or holds no snapshot fails the run, after the others.
func (p *BackupProbe) Run(ctx context.Context, t *Target) error {
	if !p.running.TryLock() {
		return nil // the run in flight checks the same files
	}
	defer p.running.Unlock()
	var errs []error
	for _, dir := range p.Dirs {
		d := p.scan(dir)
		if d.Newest != nil && !d.Newest.final() && !time.Now().Before(d.Newest.retryAt) {
			p.check(ctx, t, dir, d.Newest)
		}
		p.store(d)
		if d.Err != "" {
			errs = append(errs, errors.New(d.Err))
		}
	}
	return errors.Join(errs...)
}

func (p *BackupProbe) store(d *BackupDir) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.dirs[d.Dir]
	if p.dirs == nil {
		p.dirs = map[string]*BackupDir{}
	}
	p.dirs[d.Dir] = d
	if prev == nil || prev.Err != d.Err {
		if d.Err != "" {
			p.log().Warn("no backup to check", "dir", d.Dir, "err", d.Err)
		} else if prev != nil {
			p.log().Info("backup directory read again", "dir", d.Dir)
		}
	}
}

// scan lists dir and returns its newest snapshot: the cached one, with
// its check, when it is the same file.
func (p *BackupProbe) scan(dir string) *BackupDir {
	d := &BackupDir{Dir: dir}
	files, err := ListSnapshots(dir, time.Now(), p.Settle)
	switch {
	case err != nil:
		d.Err = fmt.Sprintf("backups.dirs: %v", err)
		return d
	case len(files) == 0:
		d.Err = fmt.Sprintf("backups.dirs: %s holds no snapshot file", dir)
		return d
	}
	d.Snapshots = len(files)
	newest := files[len(files)-1]
	p.mu.Lock()
	if prev := p.dirs[dir]; prev != nil && prev.Newest != nil && sameFile(prev.Newest, &newest) {
		newest = *prev.Newest
	}
	p.mu.Unlock()
	d.Newest = &newest
	return d
}

func sameFile(a, b *BackupSnapshot) bool {
	return a.Name == b.Name && a.Size == b.Size && a.ModTime.Equal(b.ModTime)
}

// check runs what is left of s's check and records the outcome in s.
func (p *BackupProbe) check(ctx context.Context, t *Target, dir string, s *BackupSnapshot) {
	start := time.Now()
	path := filepath.Join(dir, s.Name)
	status, reason, cause := p.verify(ctx, t, path, s)
	var retry time.Duration
	outOfTime := errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(cause, context.DeadlineExceeded)
	if outOfTime && status == BackupUnchecked {
		reason = "the check ran out of time (backups.timeout); raise it, or backups.read_rate: " + reason
		retry = backupRetryAfterDeadline
	}
	prev := s.Status
	s.Status, s.Reason = status, reason
	s.CheckedAt = time.Now()
	s.CheckDuration += s.CheckedAt.Sub(start)
	s.retryAt = s.CheckedAt.Add(retry)
	if status == prev {
		return
	}
	attrs := []any{"dir", dir, "file", s.Name, "status", status, "revision", s.Revision, "duration", s.CheckDuration}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	switch status {
	case BackupCorrupt, BackupMismatched:
		p.log().Error("backup check failed", attrs...)
	case BackupUnchecked:
		if strings.Contains(reason, notComparedYet) {
			p.log().Debug("backup not checked", attrs...) // every start
		} else {
			p.log().Warn("backup not checked", attrs...)
		}
	default:
		p.log().Info("backup checked", attrs...)
	}
}

// verify returns the snapshot's status, why, and for a check that could
// not finish, the error that stopped it. The cluster is
// asked first, as soon as the snapshot's revision is read: a Kubernetes
// API server compacts every 5 minutes, and the revision must still be
// there. The file is read through (its trailer, then the hash of its
// store) only after; the revisions and the cluster's hash are kept in s
// for a next attempt.
func (p *BackupProbe) verify(ctx context.Context, t *Target, path string, s *BackupSnapshot) (status, reason string, cause error) {
	if s.Compression != "" {
		return p.verifyCompressed(ctx, path, s)
	}
	if s.info == nil {
		info, err := SnapshotRevisions(path)
		switch {
		case errors.Is(err, ErrSnapshotCorrupt):
			// Say why from the checksum when it tells: a file altered
			// after etcd wrote it (a flipped byte, a truncated copy)
			// is named as such wherever the damage fell, rather than
			// by the first bad structure the revision read met.
			defer DropSnapshotCache(path)
			if sumErr := CheckSnapshot(ctx, path, p.Limiter); errors.Is(sumErr, ErrSnapshotCorrupt) {
				return BackupCorrupt, sumErr.Error(), nil
			}
			return BackupCorrupt, err.Error(), nil
		case err != nil:
			return BackupUnchecked, err.Error(), err
		}
		s.info = &info
		s.Revision, s.CompactRevision = info.Revision, info.CompactRevision
	}
	if s.live == nil {
		live, status, reason := p.askCluster(ctx, t, s.info)
		if live == nil {
			return status, reason, nil
		}
		s.live = live
	}
	// The trailer's sequential read, paced, leaves the file in the page
	// cache for the hash's walk, right after; then it is dropped.
	defer DropSnapshotCache(path)
	err := CheckSnapshot(ctx, path, p.Limiter)
	switch {
	case errors.Is(err, ErrSnapshotCorrupt):
		return BackupCorrupt, err.Error(), nil
	case err != nil:
		return BackupUnchecked, err.Error(), err
	}
	rev, live := s.info.Revision, s.live
	h, err := HashSnapshot(ctx, path, rev, live.CompactRevision)
	switch {
	case errors.Is(err, ErrSnapshotCorrupt):
		return BackupCorrupt, err.Error(), nil
	case err != nil:
		return BackupUnchecked, err.Error(), err
	case h.Hash != live.Hash:
		return BackupMismatched, fmt.Sprintf("at revision %d (compact revision %d) the snapshot hashes %d, member %s %d", rev, live.CompactRevision, h.Hash, live.Member, live.Hash), nil
	}
	return BackupVerified, fmt.Sprintf("hash %d at revision %d (compact revision %d), as member %s's", h.Hash, rev, live.CompactRevision, live.Member), nil
}

// notComparedYet starts the reason of a check waiting for the cluster.
const notComparedYet = "not compared with the cluster yet: "

// liveHash is the cluster's HashKV at a snapshot's revision.
type liveHash struct {
	Member          string
	Hash            uint32
	CompactRevision int64
}

// askCluster asks the member t for HashKV at the snapshot's revision;
// without a hash, the snapshot's status and why.
func (p *BackupProbe) askCluster(ctx context.Context, t *Target, info *SnapshotInfo) (*liveHash, string, string) {
	if p.View != nil {
		if why := clusterUnfit(p.View()); why != "" {
			return nil, BackupUnchecked, notComparedYet + why
		}
	}
	if t == nil || t.Maintenance == nil {
		return nil, BackupUnchecked, "no member to compare with"
	}
	rev := info.Revision
	resp, err := t.Maintenance.HashKV(ctx, t.Endpoint, rev)
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return nil, BackupUnverifiable, fmt.Sprintf("the cluster has compacted revision %d: no hash to compare", rev)
	case errors.Is(err, rpctypes.ErrFutureRev):
		return nil, BackupMismatched, fmt.Sprintf("revision %d is ahead of the cluster's: a snapshot of another cluster, or of history the cluster no longer has", rev)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return nil, BackupUnchecked, fmt.Sprintf("member %s refuses HashKV: %v (etcd allows it only to the root role when authentication is on; see docs/security.md)", t.Label(), err)
	case err != nil:
		return nil, BackupUnchecked, fmt.Sprintf("HashKV of member %s at revision %d: %v", t.Label(), rev, err)
	case resp.HashRevision != 0 && resp.HashRevision != rev:
		return nil, BackupUnchecked, fmt.Sprintf("member %s hashed revision %d, not %d", t.Label(), resp.HashRevision, rev)
	case max(resp.CompactRevision, 0) < info.CompactRevision:
		// Compaction goes through raft: the member has not applied one
		// the snapshot's member had.
		return nil, BackupUnchecked, fmt.Sprintf("member %s has compacted to revision %d, the snapshot to %d: the member is behind", t.Label(), resp.CompactRevision, info.CompactRevision)
	}
	return &liveHash{Member: t.Label(), Hash: resp.Hash, CompactRevision: resp.CompactRevision}, "", ""
}

// clusterUnfit says why the cluster should not be asked for a HashKV now,
// or "".
func clusterUnfit(v View) string {
	if !v.HealthKnown {
		return "the members' health is not known yet"
	}
	for _, m := range v.Members {
		if m.Endpoint != "" && (!m.Reachable || !m.Healthy) {
			return "member " + m.Label + " is not healthy"
		}
	}
	return ""
}

// verifyCompressed streams a compressed snapshot through its decompressor,
// which checks the container's CRC, and the sha256 trailer inside.
func (p *BackupProbe) verifyCompressed(ctx context.Context, path string, s *BackupSnapshot) (status, reason string, cause error) {
	var sum trailerSum
	var err error
	switch s.Compression {
	case "zip":
		err = readZip(ctx, path, p.Limiter, &sum)
	case "gz", "bz2":
		err = readStream(ctx, path, s.Compression, p.Limiter, &sum)
	default:
		return BackupUnchecked, fmt.Sprintf("compressed with %s, which the agent does not read", s.Compression), nil
	}
	switch {
	case err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)):
		return BackupUnchecked, err.Error(), err
	case errors.As(err, new(*fs.PathError)):
		// The file system's error, not the format's.
		return BackupUnchecked, err.Error(), err
	case err != nil:
		return BackupCorrupt, fmt.Sprintf("%s: %v", s.Compression, err), nil
	}
	if !hasChecksum(sum.n) {
		return BackupCompressed, fmt.Sprintf("the %s container is intact; the %d bytes inside have no sha256 trailer", s.Compression, sum.n), nil
	}
	if !sum.ok() {
		return BackupCorrupt, fmt.Sprintf("%s: the sha256 of the database inside does not match its trailer", s.Compression), nil
	}
	return BackupCompressed, fmt.Sprintf("the %s container and the sha256 trailer inside are intact; the store is not hashed in a compressed file", s.Compression), nil
}

// trailerSum hashes all but the last 32 bytes written, and keeps those.
type trailerSum struct {
	h    hashWriter
	tail []byte
	n    int64
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func (w *trailerSum) Write(p []byte) (int, error) {
	if w.h == nil {
		w.h = sha256.New()
	}
	w.n += int64(len(p))
	w.tail = append(w.tail, p...)
	if over := len(w.tail) - sha256.Size; over > 0 {
		w.h.Write(w.tail[:over])
		w.tail = append(w.tail[:0], w.tail[over:]...)
	}
	return len(p), nil
}

func (w *trailerSum) ok() bool {
	if w.h == nil {
		w.h = sha256.New()
	}
	return len(w.tail) == sha256.Size && string(w.h.Sum(nil)) == string(w.tail)
}

func readZip(ctx context.Context, path string, lim *rate.Limiter, to io.Writer) error {
	z, err := zip.OpenReader(path)
	if err != nil {
		return err
	}
	defer z.Close()
	var files []*zip.File
	for _, f := range z.File {
		if !f.FileInfo().IsDir() {
			files = append(files, f)
		}
	}
	if len(files) != 1 {
		return fmt.Errorf("holds %d files, not one snapshot", len(files))
	}
	r, err := files[0].Open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.CopyBuffer(to, &limitedReader{ctx: ctx, r: r, lim: lim}, make([]byte, chunk))
	return err
}

func readStream(ctx context.Context, path, format string, lim *rate.Limiter, to io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	defer dropCache(f)
	var r io.Reader
	switch format {
	case "gz":
		g, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer g.Close()
		r = g
	default:
		r = bzip2.NewReader(f)
	}
	_, err = io.CopyBuffer(to, &limitedReader{ctx: ctx, r: r, lim: lim}, make([]byte, chunk))
	return err
}

// Compressed formats by suffix: those read are checked.
var compressionSuffixes = []string{".zip", ".gz", ".bz2", ".zst", ".xz", ".lz4", ".lzma", ".tgz"}

// notSnapshotSuffixes are files a backup directory holds beside
// snapshots: partial downloads, checksums, logs, scripts.
var notSnapshotSuffixes = []string{".part", ".tmp", ".partial", ".lock", ".log", ".txt", ".json", ".yaml", ".yml", ".md", ".sh", ".sha256", ".md5", ".sum"}

// ListSnapshots lists the snapshot files of dir (not its
// subdirectories), oldest first: regular files (or links to one) that
// are not hidden, not of notSnapshotSuffixes, and not modified within
// settle before now. Each one's time is from its name where it has one.
func ListSnapshots(dir string, now time.Time, settle time.Duration) ([]BackupSnapshot, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []BackupSnapshot
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || slices.ContainsFunc(notSnapshotSuffixes, func(s string) bool { return strings.HasSuffix(name, s) }) {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if settle > 0 && now.Sub(fi.ModTime()) < settle {
			continue
		}
		s := BackupSnapshot{Name: name, Size: fi.Size(), ModTime: fi.ModTime(), Time: fi.ModTime()}
		base := name
		for _, suf := range compressionSuffixes {
			if strings.HasSuffix(name, suf) {
				s.Compression = strings.TrimPrefix(suf, ".")
				base = strings.TrimSuffix(name, suf)
				break
			}
		}
		if at, ok := SnapshotNameTime(base, now); ok {
			s.Time, s.TimeFromName = at, true
		}
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b BackupSnapshot) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

var (
	// k3s and RKE2: <name>-<node>-<unix seconds>.
	unixSuffix = regexp.MustCompile(`[-_.](\d{10})(?:\.[A-Za-z]+)?$`)
	// A CronJob's $(date ...): 2024-05-01T02:00:00Z, 20240501-020000,
	// 2024-05-01_02-00, 202405010200.
	dateTime = regexp.MustCompile(`(\d{4})-?(\d{2})-?(\d{2})[T_\-.]?(\d{2})[:\-.]?(\d{2})(?:[:\-.]?(\d{2}))?`)
)

// SnapshotNameTime reads when a snapshot was taken from its name (without
// a compression suffix): a unix time at its end (k3s, RKE2), else the last
// date and time in it, read as UTC. Dates before 2010 or after a day from
// now do not count.
func SnapshotNameTime(name string, now time.Time) (time.Time, bool) {
	plausible := func(t time.Time) bool {
		return t.Year() >= 2010 && t.Before(now.Add(24*time.Hour))
	}
	if m := unixSuffix.FindStringSubmatch(name); m != nil {
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		if t := time.Unix(sec, 0).UTC(); plausible(t) {
			return t, true
		}
	}
	ms := dateTime.FindAllStringSubmatch(name, -1)
	for i := len(ms) - 1; i >= 0; i-- {
		n := make([]int, 6)
		for j := range 6 {
			n[j], _ = strconv.Atoi(ms[i][j+1]) // an empty seconds group is 0
		}
		t := time.Date(n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], 0, time.UTC)
		valid := t.Year() == n[0] && int(t.Month()) == n[1] && t.Day() == n[2] && t.Hour() == n[3] && t.Minute() == n[4] && t.Second() == n[5]
		if valid && plausible(t) {
			return t, true
		}
	}
	return time.Time{}, false
}

func (p *BackupProbe) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}
