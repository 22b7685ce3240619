package probes

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache tells the kernel the snapshot's pages are not needed again: a
// check of a large snapshot, read once, must not push etcd's own pages
// out of the page cache for long.
func dropCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
