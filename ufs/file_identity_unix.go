//go:build unix

package ufs

import (
	"io/fs"
	"syscall"
)

// fileIdentity is the inode number of a local file.
func fileIdentity(st fs.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(sys.Ino)
	}
	return 0
}
