package router

import (
	"context"
	"io"

	"github.com/lakemesh/lakemesh/ufs"
)

// Namespace is what the front ends (the FUSE mount, the S3 gateway) use of
// a Client. It is an interface so their unit tests can run over a plain
// directory (package routertest); their end-to-end tests use a Client.
//
// Errors wrap the sentinels of ufs (ErrNotFound, ErrNotDir, ErrIsDir,
// ErrNotEmpty, ErrInvalidPath, ErrVersionChanged) and cachenode
// (ErrReadOnly, ErrResidency, ErrNoMount), so a front end maps them to
// errno or S3 codes with errors.Is.
type Namespace interface {
	Stat(ctx context.Context, p string) (Entry, error)
	// List returns one page of a directory; next is "" after the last.
	List(ctx context.Context, dir, token string, limit int) (entries []Entry, next string, err error)
	// OpenReader opens the version of a file that e describes.
	OpenReader(e Entry) (Reader, error)
	// Put writes a whole file from r; readers see the old content or the
	// new, never a mix. It returns once the file's write mode is
	// satisfied (the lake has it, or the region's journal does).
	Put(ctx context.Context, p string, r io.Reader) (Entry, error)
	// PutAttrs is Put that stores attrs (ufs.Attrs) with the file.
	PutAttrs(ctx context.Context, p string, r io.Reader, attrs ufs.Attrs) (Entry, error)
	// StatAttrs is Stat with the file's attrs.
	StatAttrs(ctx context.Context, p string) (Entry, ufs.Attrs, error)
	Remove(ctx context.Context, p string) error
	Mkdir(ctx context.Context, p string) error
	Rename(ctx context.Context, from, to string) error
}

// Reader reads one version of a file. *File is the Client's.
type Reader interface {
	Entry() Entry
	// ReadAt has io.ReaderAt semantics: io.EOF when it stops at the end.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Limit says no read will go past end, so readahead stops there.
	Limit(end int64)
	Close() error
}

// OpenReader opens the version of a file that e describes (Namespace).
func (c *Client) OpenReader(e Entry) (Reader, error) { return c.OpenEntry(e) }

var _ Namespace = (*Client)(nil)
