//go:build linux

package fusefs

import (
	"errors"
	"os"
	"syscall"
)

// errNoDirectIO is openDirect's answer where the platform has no direct
// I/O.
var errNoDirectIO = errors.New("direct I/O not supported")

// openDirect opens an existing spool file for writes that bypass the
// kernel's page cache.
func openDirect(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|syscall.O_DIRECT, 0)
}

// isDirectRefused says whether a direct write failed because the
// filesystem wants another alignment (or none at all).
func isDirectRefused(err error) bool { return errors.Is(err, syscall.EINVAL) }
