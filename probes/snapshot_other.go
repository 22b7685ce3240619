//go:build !linux

package probes

import "os"

// mmapPopulate: no such flag outside Linux.
const mmapPopulate = 0

// dropCache does nothing where posix_fadvise is not available.
func dropCache(*os.File) {}
