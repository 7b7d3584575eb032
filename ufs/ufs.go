package ufs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// FileInfo describes one file or directory in a lake.
type FileInfo struct {
	// Path is relative to the adapter's root, slash-separated, with no
	// leading or trailing slash; "" is the root itself.
	Path    string
	Size    int64
	ModTime time.Time
	IsDir   bool
	// Version identifies the content of a file: the ETag for S3; mtime,
	// size and file identity (inode, HDFS file id) for file:// and hdfs://.
	// Two Stat calls return the same Version only if the bytes are the same
	// (for file:// and hdfs://, as far as a writer that bypasses ufs leaves
	// mtime or size changed). Empty for directories.
	Version string
}

// Name is the last element of Path.
func (fi FileInfo) Name() string {
	if i := strings.LastIndexByte(fi.Path, '/'); i >= 0 {
		return fi.Path[i+1:]
	}
	return fi.Path
}

// ListPage is one page of a directory listing.
type ListPage struct {
	// Entries are direct children of the listed directory, in the store's
	// order: byte order of names for file:// and hdfs://, key order for S3
	// (where the common prefix "a/" sorts after the key "a-b"). A directory
	// appears once even if the store only has keys below it (S3 common
	// prefixes).
	Entries []FileInfo
	// Next is the token for the next page; "" when the listing is done. A
	// page may hold fewer than limit entries, even none, before the end:
	// only Next == "" ends a listing. Tokens are opaque.
	Next string
}

// FS is one lake: a file system or object store under a root URI.
//
// The contract every adapter keeps, and the conformance suite (package
// ufstest) checks:
//   - Every call takes a context and stops when it is cancelled, returning
//     an error that wraps ctx.Err().
//   - Paths are relative to the root and slash-separated. Every adapter
//     passes every path through CleanPath, so "..", NUL bytes and the like
//     are refused with ErrInvalidPath, and an adapter never reaches outside
//     its root. "" is the root, which always exists and is a directory; it
//     cannot be created, deleted, renamed or read as a file.
//   - Calls are idempotent: repeating one after a timeout is safe (a
//     repeated Delete may report ErrNotFound the second time).
//   - Stat of a missing path returns an error wrapping ErrNotFound. A path
//     below a file is missing, not an error of its own.
//   - Version is stable: Stat, List and Create report the same Version for
//     the same content, and a different one once Create or Rename has
//     replaced it with other content.
//   - List is paged: at most limit entries per call (limit <= 0 means
//     DefaultListLimit), resumed with the returned token, so a directory of
//     millions of entries never has to fit in one reply. A complete listing
//     (following Next until it is "") sees every child that existed during
//     the whole listing exactly once, in a stable order (see ListPage).
//     Listing a missing directory returns ErrNotFound; listing a file
//     returns ErrNotDir, or ErrNotFound on an object store that cannot tell
//     a file from a missing directory. Adapters hide their own temporary
//     files (names starting with TempPrefix).
//   - ReadRange returns exactly the bytes [off, off+n) of the file, fewer
//     only at the end of the file: a range starting at or past the end, or
//     n == 0, yields an empty reader (the file must still exist). The
//     adapter asks its store for that range and no more (an S3 GET with an
//     end offset). If version is not empty and the file's content is no
//     longer that version, it returns ErrVersionChanged instead of mixing
//     versions. Reading a directory returns ErrIsDir (ErrNotFound on object
//     stores). The caller closes the reader.
//   - Create writes the whole file atomically: readers see the old content
//     or the new, never a part, and a Create that fails (the reader errors,
//     the context is cancelled) leaves the old content. Parent directories
//     are created as needed. On a lake that keeps attrs (AttrFS), the new
//     file has none (but for a content-type an object store defaults), and
//     a failed Create leaves the old attrs.
//   - Mkdir creates the directory and its parents; an existing directory is
//     not an error.
//   - Delete of a missing file returns ErrNotFound. Delete of a directory
//     removes it only when it is empty (ErrNotEmpty otherwise); object
//     stores that have no directories treat an empty prefix as deleted.
//   - Rename replaces the destination file if it exists (a destination that
//     is a directory is refused with ErrIsDir) and creates the
//     destination's parents; it is atomic on file:// and hdfs://,
//     copy-then-delete on S3. Object stores may refuse to rename a directory
//     (ErrIsDir), since that would copy every key below it. A file's attrs
//     (AttrFS) go with it.
//
// An FS is safe for concurrent use by many goroutines.
type FS interface {
	Stat(ctx context.Context, path string) (FileInfo, error)
	List(ctx context.Context, dir, token string, limit int) (ListPage, error)
	ReadRange(ctx context.Context, path, version string, off, n int64) (io.ReadCloser, error)
	Create(ctx context.Context, path string, r io.Reader) (FileInfo, error)
	Mkdir(ctx context.Context, path string) error
	Delete(ctx context.Context, path string) error
	Rename(ctx context.Context, from, to string) error
	// String is the root URI, without credentials, for logs and errors.
	String() string
	Close() error
}

// Errors callers branch on. Adapters wrap them with context.
var (
	ErrNotFound       = errors.New("not found")
	ErrNotDir         = errors.New("not a directory")
	ErrIsDir          = errors.New("is a directory")
	ErrNotEmpty       = errors.New("directory not empty")
	ErrVersionChanged = errors.New("file changed since it was opened")
	ErrInvalidPath    = errors.New("invalid path")
)

// DefaultListLimit is the page size List uses when it is given no limit.
const DefaultListLimit = 1000

// TempPrefix starts the names of the temporary files adapters write before
// renaming them into place. List never shows them.
const TempPrefix = ".lakemesh-tmp-"

// Opener opens an adapter for a parsed root URI.
type Opener func(ctx context.Context, root *url.URL) (FS, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes an adapter available for a URI scheme. It is called from
// the adapters' init functions and panics on a duplicate scheme.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("ufs: scheme registered twice: " + scheme)
	}
	registry[scheme] = open
}

// Schemes lists the registered URI schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var out []string
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open opens the lake at uri with the adapter registered for its scheme.
func Open(ctx context.Context, uri string) (FS, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("lake URI %q: %w", uri, err)
	}
	registryMu.RLock()
	open, ok := registry[u.Scheme]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("lake URI %q: unknown scheme %q (known: %s)", uri, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// CleanPath turns a user-supplied relative path into the canonical form
// adapters take: slash-separated, no leading or trailing slash, no empty,
// "." or ".." elements. It refuses rather than resolves "..", so a path can
// never climb out of its root.
func CleanPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q: %w: contains a NUL byte", p, ErrInvalidPath)
	}
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, el := range parts {
		switch el {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("path %q: %w: \"..\" is not allowed", p, ErrInvalidPath)
		}
		out = append(out, el)
	}
	return strings.Join(out, "/"), nil
}
