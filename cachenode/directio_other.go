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
