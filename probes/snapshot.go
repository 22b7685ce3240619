package probes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protowire"
)

// What an etcd snapshot is, as etcd writes and reads it:
//
//   - Maintenance.Snapshot streams the member's bolt database and then the
//     sha256 of those bytes, so a snapshot taken through the client API
//     (etcdctl snapshot save, k3s, RKE2) ends with a 32-byte trailer;
//     etcdutl snapshot restore tells one by its size (hasChecksum in
//     go.etcd.io/etcd/etcdutl/v3/snapshot/v3_snapshot.go: size % 512 ==
//     32, as a bolt file is whole pages) and refuses a snapshot without
//     one unless told --skip-hash-check (a copy of a data directory's db).
//   - The key bucket holds one entry per revision: the key is the revision
//     (8 bytes main, '_', 8 bytes sub, and 't' for a tombstone), the value
//     the mvccpb.KeyValue (go.etcd.io/etcd/server/v3/storage/mvcc
//     revision.go).
//   - The meta bucket holds the finished and scheduled compact revisions.

// Bucket and key names of etcd's schema (storage/schema/bucket.go).
var (
	snapKeyBucket        = []byte("key")
	snapMetaBucket       = []byte("meta")
	snapFinishedCompact  = []byte("finishedCompactRev")
	snapScheduledCompact = []byte("scheduledCompactRev")
)

const (
	revBytesLen       = 8 + 1 + 8
	markedRevBytesLen = revBytesLen + 1
	markTombstone     = 't'
)

// ErrSnapshotCorrupt is wrapped by every error that says a snapshot's
// bytes are wrong (not that it could not be read).
var ErrSnapshotCorrupt = errors.New("snapshot corrupt")

// corrupt returns an error wrapping ErrSnapshotCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSnapshotCorrupt, fmt.Sprintf(format, args...))
}

// SnapshotInfo is what a snapshot file says of itself, read without a
// cluster.
type SnapshotInfo struct {
	// Size is the file's size, trailer included.
	Size int64
	// Checksum: the file ends with etcd's sha256 trailer, and it matched.
	// A file without one (a copy of a data directory's db) is checked as
	// a bolt database only.
	Checksum bool
	// Revision is the store's current revision as etcd restores it: the
	// highest revision of the key bucket, or a later compact revision.
	Revision int64
	// CompactRevision is the last compaction the snapshot's store
	// finished (0: never compacted).
	CompactRevision int64
}

// hasChecksum is etcdutl's test for the sha256 trailer.
func hasChecksum(size int64) bool { return size%512 == sha256.Size }

// chunk is the unit of reads and of the rate limiter.
const chunk = 1 << 20

// limitedReader reads r sequentially in chunks, waiting on lim (nil: no
// limit) before each, and checks ctx between chunks.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > chunk {
		p = p[:chunk]
	}
	if l.lim != nil {
		if err := l.lim.WaitN(l.ctx, len(p)); err != nil {
			if l.ctx.Err() == nil {
				// The limiter foresees the deadline before it passes.
				err = fmt.Errorf("%w: the read at the rate limit would end after the deadline", context.DeadlineExceeded)
			}
			return 0, err
		}
	}
	return l.r.Read(p)
}

// NewReadLimiter returns a limiter of bytesPerSecond for snapshot reads;
// nil (no limit) when it is 0 or less.
func NewReadLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSecond), chunk)
}

// ReadSnapshot reads a snapshot file's revisions (SnapshotRevisions) and
// checks its integrity (CheckSnapshot).
func ReadSnapshot(ctx context.Context, path string, lim *rate.Limiter) (SnapshotInfo, error) {
	info, err := SnapshotRevisions(path)
	if err != nil {
		return info, err
	}
	defer DropSnapshotCache(path)
	return info, CheckSnapshot(ctx, path, lim)
}

// SnapshotRevisions reads, cheaply, a snapshot's size, whether it ends
// with etcd's sha256 trailer (not checked here) and its revisions: its
// bolt database is opened read-only in place (bolt ignores the trailer's
// bytes after its last page), its meta pages checked, and that the file
// holds every page they count (a truncated file fails here, before bolt
// would read past its end); then two reads of the meta bucket and the
// last key of the key bucket. Errors that wrap ErrSnapshotCorrupt are the
// file's fault; others are the reading's.
func SnapshotRevisions(path string) (SnapshotInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info := SnapshotInfo{Size: st.Size(), Checksum: hasChecksum(st.Size())}
	if !info.Checksum && info.Size%512 != 0 {
		return info, corrupt("%d bytes: not whole pages, nor whole pages and etcd's sha256 trailer (truncated?)", info.Size)
	}
	err = viewSnapshot(path, dataSize(info.Size), false, func(tx *bolt.Tx) error {
		rev, compact, err := snapshotRevisions(tx)
		info.Revision, info.CompactRevision = rev, compact
		return err
	})
	return info, err
}

// dataSize is the size of a snapshot's database: the file's, less the
// trailer if it has one.
func dataSize(size int64) int64 {
	if hasChecksum(size) {
		return size - sha256.Size
	}
	return size
}

// CheckSnapshot checks a snapshot's bytes: its sha256 trailer, reading
// the file once from start to end through lim; a file without a trailer
// (a copy of a data directory's db) is read the same way, then walked by
// bolt's own consistency check. Either way the file is left in the page
// cache for HashSnapshot; DropSnapshotCache drops it after. Errors that
// wrap ErrSnapshotCorrupt are the file's fault; others are the reading's.
func CheckSnapshot(ctx context.Context, path string, lim *rate.Limiter) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if hasChecksum(size) {
		return verifyTrailer(ctx, f, size-sha256.Size, lim)
	}
	buf := make([]byte, chunk)
	if _, err := io.CopyBuffer(io.Discard, &limitedReader{ctx: ctx, r: io.NewSectionReader(f, 0, size), lim: lim}, buf); err != nil {
		return err
	}
	return viewSnapshot(path, size, true, func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the check's goroutine ends
			if first == nil {
				first = corrupt("bolt consistency check: %v", err)
			}
		}
		return first
	})
}

// DropSnapshotCache tells the kernel that a checked snapshot's pages are
// not needed again: a check must not keep etcd's own pages out of the
// page cache for long.
func DropSnapshotCache(path string) {
	if f, err := os.Open(path); err == nil {
		dropCache(f)
		f.Close()
	}
}

// verifyTrailer hashes the first n bytes of f and compares them with the
// 32 bytes after.
func verifyTrailer(ctx context.Context, f *os.File, n int64, lim *rate.Limiter) error {
	h := sha256.New()
	buf := make([]byte, chunk)
	if _, err := io.CopyBuffer(h, &limitedReader{ctx: ctx, r: io.NewSectionReader(f, 0, n), lim: lim}, buf); err != nil {
		return err
	}
	want := make([]byte, sha256.Size)
	if _, err := f.ReadAt(want, n); err != nil {
		return err
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return corrupt("sha256 of the database is %x, its trailer says %x", got, want)
	}
	return nil
}

// viewSnapshot opens the snapshot's bolt database read-only and runs f in
// a read transaction, after checking that the file holds every page the
// meta page counts. A fault on the mapped file (a page past its end) or a
// panic of bolt on a page it cannot read is a corrupt snapshot, not a
// crash. populate maps the file's pages at once (MAP_POPULATE, on Linux)
// for a walk of the whole database: bolt advises the kernel of random
// reads, so each 4 KiB page would otherwise be faulted in on its own,
// about ten times slower (docs/benchmarks.md); the pages come from the
// page cache, where CheckSnapshot's sequential read left them.
func viewSnapshot(path string, size int64, populate bool, f func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corrupt("bolt cannot read the database: %v", r)
		}
	}()
	opts := &bolt.Options{ReadOnly: true, Timeout: time.Second}
	if populate {
		opts.MmapFlags = mmapPopulate
	}
	db, err := bolt.Open(path, 0, opts)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("%s is locked by another process: %w", path, err)
		}
		return corrupt("bolt cannot open it: %v", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); need > size {
			return corrupt("the database counts %d bytes of pages, the file holds %d (truncated)", need, size)
		}
		return f(tx)
	})
}

// snapshotRevisions reads the store's current and finished compact
// revisions as etcd's restore does (mvcc store.restore): the highest
// revision of the key bucket, raised to a compact revision above it.
func snapshotRevisions(tx *bolt.Tx) (rev, compact int64, err error) {
	meta := tx.Bucket(snapMetaBucket)
	kb := tx.Bucket(snapKeyBucket)
	if meta == nil || kb == nil {
		return 0, 0, corrupt("no %q or %q bucket: not an etcd v3 database", snapKeyBucket, snapMetaBucket)
	}
	var scheduled int64
	for _, m := range []struct {
		key []byte
		to  *int64
	}{{snapFinishedCompact, &compact}, {snapScheduledCompact, &scheduled}} {
		if v := meta.Get(m.key); v != nil {
			if len(v) < revBytesLen {
				return 0, 0, corrupt("meta %s holds %d bytes, not a revision", m.key, len(v))
			}
			*m.to = int64(binary.BigEndian.Uint64(v))
		}
	}
	rev = 1
	if k, _ := kb.Cursor().Last(); k != nil {
		main, _, err := bucketRevision(k)
		if err != nil {
			return 0, 0, err
		}
		rev = main
	}
	return max(rev, compact, scheduled), compact, nil
}

// bucketRevision parses a key of the key bucket.
func bucketRevision(k []byte) (main int64, tombstone bool, err error) {
	switch {
	case len(k) == revBytesLen:
	case len(k) == markedRevBytesLen && k[revBytesLen] == markTombstone:
		tombstone = true
	default:
		return 0, false, corrupt("a key of the key bucket is %d bytes, not a revision", len(k))
	}
	return int64(binary.BigEndian.Uint64(k)), tombstone, nil
}

// kvKey returns the key of an mvccpb.KeyValue, its field 1, without
// decoding the rest (the value is never read).
func kvKey(v []byte) ([]byte, error) {
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return nil, corrupt("a value of the key bucket is not a KeyValue")
		}
		v = v[n:]
		if num == 1 && typ == protowire.BytesType {
			b, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return nil, corrupt("a value of the key bucket is not a KeyValue")
			}
			return b, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, v)
		if n < 0 {
			return nil, corrupt("a value of the key bucket is not a KeyValue")
		}
		v = v[n:]
	}
	return nil, corrupt("a value of the key bucket has no key")
}

// keyID names a key in memory without keeping it: two 64-bit hashes of
// independent seeds.
type keyID [2]uint64

type keyHasher struct{ a, b maphash.Seed }

func newKeyHasher() keyHasher { return keyHasher{maphash.MakeSeed(), maphash.MakeSeed()} }

func (h keyHasher) id(key []byte) keyID {
	return keyID{maphash.Bytes(h.a, key), maphash.Bytes(h.b, key)}
}

// SnapshotHash is HashKV of a snapshot.
type SnapshotHash struct {
	Hash uint32
	// Revision and CompactRevision are those the hash was computed at.
	Revision, CompactRevision int64
}

// HashSnapshot computes, from a snapshot file, what etcd's HashKV answers
// for the same store at revision rev when its compact revision is
// compactRev (mvcc hashByRev and kvHasher, storage/mvcc/hash.go): the
// crc32 (Castagnoli) of the key bucket's name, then of every key and value
// of the key bucket up to rev, where a revision at or below compactRev
// counts only when it is the latest of its key at rev and no tombstone
// (the index's Keep(rev)), unless no key is alive at rev, and a tombstone
// at compactRev never counts.
//
// compactRev is the live member's, which may be later than the
// snapshot's own: the revisions the member has compacted since are those
// Keep leaves out, so the hashes still agree. etcdutl hashkv gets the same
// hash from a copy it opens read-write through mvcc.NewStore, which
// rebuilds the whole key index in memory; here the file is only read, in
// two passes over the mapped file: the revisions after the snapshot's own
// compaction (the keys they touch, by a 128-bit hash of each, never the
// keys themselves), then every revision. Call it after CheckSnapshot,
// whose read (paced by the read limit) leaves the file in the page cache.
func HashSnapshot(ctx context.Context, path string, rev, compactRev int64) (SnapshotHash, error) {
	st, err := os.Stat(path)
	if err != nil {
		return SnapshotHash{}, err
	}
	size := dataSize(st.Size())
	var out SnapshotHash
	err = viewSnapshot(path, size, true, func(tx *bolt.Tx) error {
		_, finished, err := snapshotRevisions(tx)
		if err != nil {
			return err
		}
		h := &snapHasher{ctx: ctx, keys: newKeyHasher(), rev: rev, compact: compactRev, finished: finished}
		if err := h.learnLatest(tx.Bucket(snapKeyBucket)); err != nil {
			return err
		}
		sum, err := h.hash(tx.Bucket(snapKeyBucket))
		out = SnapshotHash{Hash: sum, Revision: rev, CompactRevision: compactRev}
		return err
	})
	return out, err
}

// snapHasher holds one HashSnapshot's passes.
type snapHasher struct {
	ctx                    context.Context
	keys                   keyHasher
	rev, compact, finished int64
	n                      int // entries since ctx was last checked
	// latest is, per key touched after the finished compaction, its
	// latest revision up to rev (negative: a tombstone).
	latest map[keyID]int64
	// alive: some key is alive at rev (Keep is not empty).
	alive bool
}

// tombstoneRev marks a latest revision that is a tombstone.
func tombstoneRev(main int64) int64 { return -main }

// account checks ctx every 1024 entries.
func (h *snapHasher) account() error {
	h.n++
	if h.n%1024 != 0 {
		return nil
	}
	return h.ctx.Err()
}

// learnLatest is the first pass: for every key with a revision after the
// snapshot's finished compaction (and up to rev), its latest revision;
// whether any key is alive at rev. Below the finished compaction, etcd
// kept at most one revision of each key (the latest then, or the
// tombstone at it), so a revision there is its key's latest exactly when
// the key has none after.
func (h *snapHasher) learnLatest(kb *bolt.Bucket) error {
	h.latest = map[keyID]int64{}
	c := kb.Cursor()
	start := make([]byte, revBytesLen)
	binary.BigEndian.PutUint64(start, uint64(h.finished+1))
	start[8] = '_'
	for k, v := c.Seek(start); k != nil; k, v = c.Next() {
		main, tomb, err := bucketRevision(k)
		if err != nil {
			return err
		}
		if main > h.rev {
			break
		}
		key, err := kvKey(v)
		if err != nil {
			return err
		}
		id := h.keys.id(key)
		if tomb {
			h.latest[id] = tombstoneRev(main)
		} else {
			h.latest[id] = main
		}
		if err := h.account(); err != nil {
			return err
		}
	}
	for _, r := range h.latest {
		if r > 0 {
			h.alive = true
			return nil
		}
	}
	// No key written since is alive: one alive from before the
	// compaction, if any, is the first put there not touched since.
	for k, v := c.First(); k != nil; k, v = c.Next() {
		main, tomb, err := bucketRevision(k)
		if err != nil {
			return err
		}
		if main > h.finished || main > h.rev {
			return nil
		}
		if tomb {
			continue
		}
		key, err := kvKey(v)
		if err != nil {
			return err
		}
		if _, touched := h.latest[h.keys.id(key)]; !touched {
			h.alive = true
			return nil
		}
	}
	return nil
}

// kept: the revision is its key's latest at rev and no tombstone (the
// index's Keep(rev)).
func (h *snapHasher) kept(main int64, tomb bool, v []byte) (bool, error) {
	if tomb {
		return false, nil
	}
	key, err := kvKey(v)
	if err != nil {
		return false, err
	}
	latest, touched := h.latest[h.keys.id(key)]
	if main <= h.finished {
		return !touched, nil
	}
	return latest == main, nil
}

// hash is the second pass: kvHasher over the key bucket.
func (h *snapHasher) hash(kb *bolt.Bucket) (uint32, error) {
	sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	sum.Write(snapKeyBucket)
	c := kb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		main, tomb, err := bucketRevision(k)
		if err != nil {
			return 0, err
		}
		if main > h.rev {
			break
		}
		if err := h.account(); err != nil {
			return 0, err
		}
		if main <= h.compact && h.alive {
			ok, err := h.kept(main, tomb, v)
			if err != nil {
				return 0, err
			}
			if !ok {
				continue
			}
		}
		if main == h.compact && tomb {
			continue
		}
		sum.Write(k)
		sum.Write(v)
	}
	return sum.Sum32(), nil
}
