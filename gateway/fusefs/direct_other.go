//go:build !linux

package fusefs

import (
	"errors"
	"os"
)

// errNoDirectIO is openDirect's answer where the platform has no direct
// I/O: spools are written through the page cache.
var errNoDirectIO = errors.New("direct I/O not supported")

func openDirect(string) (*os.File, error) { return nil, errNoDirectIO }

func isDirectRefused(error) bool { return false }
