package testenv

import "golang.org/x/sys/unix"

// memoryFS names the filesystem under dir when fdatasync there reaches no
// disk of its own (tmpfs, ramfs, overlay), and is "" otherwise.
func memoryFS(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return ""
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	}
	return ""
}
