//go:build !linux

package router

import (
	"errors"
	"os"

	"github.com/lakemesh/lakemesh/cachenode"
)

// Zero-copy sections need short-circuit grants, which only Linux has.

func reopen(*os.File) (*os.File, error) {
	return nil, errors.New("zero-copy sections are linux-only")
}

type pageMaps struct{}

func newPageMaps() *pageMaps { return nil }

func (*pageMaps) close() {}

func (*shortCircuit) verify(scKey, *os.File, *os.File, cachenode.DiskPage, int64, int64, func([]byte) error) error {
	return errors.New("zero-copy sections are linux-only")
}
