package fusefs

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// maxNameLen is the longest file name the mount accepts, in bytes (Linux's
// NAME_MAX; the kernel lets FUSE names up to 1024 bytes through).
const maxNameLen = 255

// errnoTable maps the errors of the namespace to errno, first match wins.
// It is the only place errno values are chosen for lakemesh's errors.
var errnoTable = []struct {
	err   error
	errno syscall.Errno
}{
	{ufs.ErrNotFound, syscall.ENOENT},
	{ufs.ErrNotDir, syscall.ENOTDIR},
	{ufs.ErrIsDir, syscall.EISDIR},
	{ufs.ErrNotEmpty, syscall.ENOTEMPTY},
	{ufs.ErrInvalidPath, syscall.EINVAL},
	// A file changed in the lake since it was opened: the handle is
	// stale, the application opens the file again to read the new
	// version.
	{ufs.ErrVersionChanged, syscall.ESTALE},
	{cachenode.ErrReadOnly, syscall.EROFS},
	{cachenode.ErrResidency, syscall.EACCES},
	// A write where no mount is ("/", "/lake", a new name in /lake): the
	// tree above the mounts is read-only. Lookups turn it into ENOENT.
	{cachenode.ErrNoMount, syscall.EROFS},
	{context.DeadlineExceeded, syscall.ETIMEDOUT},
	{context.Canceled, syscall.EINTR},
	// The region cannot serve: no node answers, or no line can carry the
	// bytes. The error is logged; the application sees an I/O error.
	{router.ErrNoNode, syscall.EIO},
	{cachenode.ErrLineDown, syscall.EIO},
}

// Errno maps an error of the namespace to the errno a FUSE call returns:
// 0 for nil, EIO for anything it does not know.
func Errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, e := range errnoTable {
		if errors.Is(err, e.err) {
			return e.errno
		}
	}
	return syscall.EIO
}

// checkName refuses a directory entry name that could not be one element
// of a namespace path: empty, ".", "..", containing "/" or NUL (so
// nothing can climb out of the namespace), or longer than NAME_MAX.
func checkName(name string) syscall.Errno {
	switch {
	case name == "" || name == "." || name == "..":
		return syscall.EINVAL
	case strings.ContainsAny(name, "/\x00"):
		return syscall.EINVAL
	case len(name) > maxNameLen:
		return syscall.ENAMETOOLONG
	}
	return 0
}
