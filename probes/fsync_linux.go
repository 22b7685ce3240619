package probes

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// osFS is the real file system, used the way etcd's WAL uses it.
type osFS struct{}

// Create opens a new file and preallocates it with fallocate(mode 0), as
// etcd preallocates a WAL segment (fileutil.Preallocate with extendFile),
// falling back to ftruncate where fallocate is not supported, as etcd does.
func (osFS) Create(path string, size int64) (syncFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if err := preallocate(f, size); err != nil {
		f.Close()
		os.Remove(path)
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			err = fmt.Errorf("%w: %w", errNoSpace, err)
		}
		return nil, fmt.Errorf("fallocate %d bytes for %s: %w", size, path, err)
	}
	return osFile{f}, nil
}

func preallocate(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINTR) {
		return f.Truncate(size)
	}
	return err
}

func (osFS) Remove(path string) error { return os.Remove(path) }

func (osFS) Statfs(path string) (fsStat, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fsStat{}, err
	}
	return fsStat{Type: int64(st.Type), Avail: st.Bavail * uint64(st.Bsize)}, nil
}

func (osFS) Device(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return uint64(st.Dev), nil
}

// osFile is an open probe file.
type osFile struct{ f *os.File }

func (o osFile) Write(b []byte) (int, error) { return o.f.Write(b) }

// Sync is fdatasync(2), as etcd's WAL syncs (fileutil.Fdatasync).
func (o osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (o osFile) Close() error { return o.f.Close() }

func devName(dev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)) }
