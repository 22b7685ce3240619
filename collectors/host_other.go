//go:build !unix

package collectors

// sameFilesystem: without st_dev, two directories count as two filesystems.
func sameFilesystem(a, b string) bool { return false }
