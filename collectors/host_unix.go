//go:build unix

package collectors

import (
	"os"
	"syscall"
)

// sameFilesystem reports whether a and b are on one filesystem (one
// st_dev). Where either cannot be read they count as two.
func sameFilesystem(a, b string) bool {
	fa, erra := os.Stat(a)
	fb, errb := os.Stat(b)
	if erra != nil || errb != nil {
		return false
	}
	sa, oka := fa.Sys().(*syscall.Stat_t)
	sb, okb := fb.Sys().(*syscall.Stat_t)
	return oka && okb && sa.Dev == sb.Dev
}
