//go:build !linux

package cachenode

import (
	"errors"
	"os"
)

var errNoDirectIO = errors.New("direct I/O not supported")

// openDirect: this platform's page writes go through the page cache.
func openDirect(string) (*os.File, error) { return nil, errNoDirectIO }

func directAligned([]byte, int64) bool { return false }

// startWriteback: the final fsync writes everything.
func startWriteback(*os.File, int64, int64) {}

// preallocate makes f n bytes long; the space is allocated as written.
func preallocate(f *os.File, n int64) error { return f.Truncate(n) }

var errNoPunchHole = errors.New("punching holes not supported")

// punchHole: the space of a dropped packed page comes back when its pack
// is removed.
func punchHole(*os.File, int64, int64) error { return errNoPunchHole }

// writeDirectv: no direct writes on this platform.
func writeDirectv(*os.File, [][]byte, int64) error { return errNoDirectIO }
