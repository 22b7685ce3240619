package probes

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// osFS is the real file system, used the way etcd's WAL uses it.
type osFS struct{}

// Create opens a new file, locks it, and preallocates it with
// fallocate(mode 0), as etcd preallocates a WAL segment
// (fileutil.Preallocate with extendFile), falling back to ftruncate where
// fallocate is not supported, as etcd does.
func (osFS) Create(path string, size int64) (syncFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockNew(f, path); err != nil {
		f.Close()
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

// lockNew takes the flock that marks a new probe file as live, for as long
// as f is open. A sweep may catch the file in the instant between its
// creation and the lock: it then holds the lock itself, or has removed the
// file, and the probe makes another one.
func lockNew(f *os.File, path string) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		return fmt.Errorf("lock %s: %w", path, errFileTaken)
	case err != nil:
		// A filesystem without flock (some network filesystems): measure
		// all the same; a starting agent's sweep may then remove the file
		// while it is open, which the probe's own unlink tolerates.
		return nil
	}
	var open, named unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &open); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := unix.Stat(path, &named); err != nil || named.Dev != open.Dev || named.Ino != open.Ino {
		return fmt.Errorf("lock %s: %w", path, errFileTaken)
	}
	return nil
}

// RemoveUnlocked removes a probe file unless a live probe holds its flock.
// It removes the file while holding the lock itself, so that a probe that
// created the file an instant before cannot lock it and measure on it.
func (osFS) RemoveUnlocked(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return false, nil
	case err != nil:
		// Without locks, a live file cannot be told from a stale one.
		return false, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	if err := os.Remove(path); err != nil {
		return false, err
	}
	return true, nil
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
