//go:build linux

package cachenode

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

var errNoDirectIO = errors.New("direct I/O not supported")

// openDirect opens (creating it) a file for writes that bypass the page
// cache.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o644)
}

// directAligned reports whether a direct write of p's aligned head at off
// is allowed.
func directAligned(p []byte, off int64) bool {
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return len(p) >= directAlign && addr%directAlign == 0 && off%directAlign == 0
}
