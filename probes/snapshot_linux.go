package probes

import (
	"os"

	"golang.org/x/sys/unix"
)

// mmapPopulate maps a file's pages at once.
const mmapPopulate = unix.MAP_POPULATE

// dropCache tells the kernel the file's pages are not needed again.
func dropCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
