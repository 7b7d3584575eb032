//go:build !(linux || darwin || freebsd || netbsd)

package ufs

import (
	"fmt"
	"os"
	"runtime"
)

// setFileAttrs fails: lakemesh uses extended attributes only where
// golang.org/x/sys/unix has the calls for them.
func setFileAttrs(*os.File, []byte) error {
	return fmt.Errorf("extended attributes are not used on %s: %w", runtime.GOOS, ErrAttrsNotKept)
}

// getFileAttrs finds none, since setFileAttrs stores none.
func getFileAttrs(*os.File) ([]byte, error) { return nil, nil }
