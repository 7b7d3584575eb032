//go:build linux

package cachenode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

// startWriteback asks the kernel to start writing bytes [off, off+n) of f
// to the disk now, without waiting for it (sync_file_range with
// SYNC_FILE_RANGE_WRITE): the bytes reach the disk while the writer goes
// on, and a final fsync has little left to do. Advice: an error is
// ignored, the fsync still syncs everything.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// preallocate allocates n bytes of f's space (the file's size becomes n)
// without writing them.
func preallocate(f *os.File, n int64) error {
	return unix.Fallocate(int(f.Fd()), 0, 0, n)
}

// punchHole gives bytes [off, off+n) of f back to the file system; they
// read as zeros after, and the file's size is kept.
func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// writeDirectv writes bufs, one after another, at off of f, a descriptor
// opened by openDirect, with one pwritev(2): every buffer's address and
// length, and off, must be multiples of DirectAlign. A short write is an
// error wrapping io.ErrShortWrite.
func writeDirectv(f *os.File, bufs [][]byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	want := 0
	for _, b := range bufs {
		want += len(b)
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = unix.Pwritev(int(fd), bufs, off)
		return true
	}); err != nil {
		return err
	}
	if werr == nil && n != want {
		werr = fmt.Errorf("wrote %d of %d bytes: %w", n, want, io.ErrShortWrite)
	}
	return werr
}
