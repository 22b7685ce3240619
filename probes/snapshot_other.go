//go:build !linux

package probes

import "os"

// dropCache does nothing where posix_fadvise is not available.
func dropCache(*os.File) {}
