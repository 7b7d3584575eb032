package ufs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

func init() { Register("file", openFile) }

// fileFS is a lake in a local (or locally mounted) directory. Every access
// goes through an os.Root, so neither a path nor a symlink inside the lake
// can reach a file outside it.
type fileFS struct {
	dir  string
	root *os.Root
}

// openFile opens file:///abs/dir. The directory must exist: a typo in a
// topology file should fail loudly, not create an empty lake.
func openFile(_ context.Context, u *url.URL) (FS, error) {
	if u.User != nil || (u.Host != "" && u.Host != "localhost") {
		return nil, fmt.Errorf("file lake %q: want file:///absolute/dir (no host or user)", u.Redacted())
	}
	if u.RawQuery != "" {
		return nil, fmt.Errorf("file lake %q: file:// takes no options", u.Redacted())
	}
	if u.Opaque != "" || !filepath.IsAbs(filepath.FromSlash(u.Path)) {
		return nil, fmt.Errorf("file lake %q: the path must be absolute (file:///abs/dir)", u.Redacted())
	}
	dir := filepath.Clean(filepath.FromSlash(u.Path))
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file lake %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("file lake %s: %w", dir, ErrNotDir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("file lake %s: %w", dir, err)
	}
	return &fileFS{dir: dir, root: root}, nil
}

func (f *fileFS) String() string { return "file://" + filepath.ToSlash(f.dir) }

func (f *fileFS) Close() error { return f.root.Close() }

func (f *fileFS) Stat(ctx context.Context, p string) (FileInfo, error) {
	p, err := f.arg(ctx, "stat", p)
	if err != nil {
		return FileInfo{}, err
	}
	st, err := f.root.Stat(osName(p))
	if err != nil {
		return FileInfo{}, f.fail("stat", p, err, ErrNotFound)
	}
	return fileInfoOf(p, st), nil
}

func (f *fileFS) List(ctx context.Context, dir, token string, limit int) (ListPage, error) {
	dir, err := f.arg(ctx, "list", dir)
	if err != nil {
		return ListPage{}, err
	}
	d, err := f.root.Open(osName(dir))
	if err != nil {
		return ListPage{}, f.fail("list", dir, err, ErrNotFound)
	}
	st, err := d.Stat()
	if err != nil {
		d.Close()
		return ListPage{}, f.fail("list", dir, err, ErrNotFound)
	}
	if !st.IsDir() {
		d.Close()
		return ListPage{}, fmt.Errorf("list %s: %w", f.where(dir), ErrNotDir)
	}
	// Names only: cheap even for a large directory, and enough to page.
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return ListPage{}, f.fail("list", dir, err, ErrNotFound)
	}
	sort.Strings(names)
	page, next := pageNames(names, token, limit)
	out := ListPage{Entries: make([]FileInfo, 0, len(page)), Next: next}
	for _, name := range page {
		if err := ctx.Err(); err != nil {
			return ListPage{}, fmt.Errorf("list %s: %w", f.where(dir), err)
		}
		p := joinPath(dir, name)
		st, err := f.root.Stat(osName(p))
		if err != nil {
			// Gone since the directory was read, a dangling symlink, or a
			// symlink out of the lake: nothing a reader could open.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) || isEscape(err) {
				continue
			}
			return ListPage{}, f.fail("list", p, err, ErrNotFound)
		}
		out.Entries = append(out.Entries, fileInfoOf(p, st))
	}
	return out, nil
}

func (f *fileFS) ReadRange(ctx context.Context, p, version string, off, n int64) (io.ReadCloser, error) {
	p, err := f.arg(ctx, "read", p)
	if err != nil {
		return nil, err
	}
	if err := checkRange("read", f.where(p), off, n); err != nil {
		return nil, err
	}
	file, err := f.root.Open(osName(p))
	if err != nil {
		return nil, f.fail("read", p, err, ErrNotFound)
	}
	// The version check and the read use the same descriptor: a Create that
	// renames new content into place after this point does not change what
	// this descriptor reads.
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, f.fail("read", p, err, ErrNotFound)
	}
	if st.IsDir() {
		file.Close()
		return nil, fmt.Errorf("read %s: %w", f.where(p), ErrIsDir)
	}
	if v := fileVersion(st); version != "" && v != version {
		file.Close()
		return nil, fmt.Errorf("read %s: %w (want version %s, have %s)", f.where(p), ErrVersionChanged, version, v)
	}
	m := clampRange(off, n, st.Size())
	if m == 0 {
		file.Close()
		return emptyReader(), nil
	}
	return rangeReader{Reader: ctxReader{ctx, io.NewSectionReader(file, off, m)}, close: file.Close}, nil
}

func (f *fileFS) Create(ctx context.Context, p string, r io.Reader) (FileInfo, error) {
	p, err := f.arg(ctx, "create", p)
	if err != nil {
		return FileInfo{}, err
	}
	return f.create(ctx, p, r, nil)
}

// create writes r to the cleaned path p, with attrs (the value of the
// extended attribute fileAttrsName; nil for none) on the new file.
func (f *fileFS) create(ctx context.Context, p string, r io.Reader, attrs []byte) (FileInfo, error) {
	if p == "" {
		return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), ErrIsDir)
	}
	dir := parentPath(p)
	if err := f.mkdirAll(dir); err != nil {
		return FileInfo{}, f.fail("create", p, err, ErrNotDir)
	}
	if st, err := f.root.Lstat(osName(p)); err == nil && st.IsDir() {
		return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), ErrIsDir)
	}
	// Write a temporary file next to the target and rename it into place:
	// a reader sees the old file or the new one, never a part, and a failed
	// write leaves the old file as it was.
	tmpName := joinPath(dir, TempPrefix+rand.Text())
	tmp, err := f.root.OpenFile(osName(tmpName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return FileInfo{}, f.fail("create", p, err, ErrNotDir)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			f.root.Remove(osName(tmpName))
		}
	}()
	// The attrs go on the temporary file, so the rename publishes them with
	// the bytes; and before the bytes, so a file system that keeps no
	// attrs fails the Create before the body is read.
	if len(attrs) > 0 {
		if err := setFileAttrs(tmp, attrs); err != nil {
			return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), err)
		}
	}
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		return FileInfo{}, fmt.Errorf("create %s: write: %w", f.where(p), err)
	}
	if err := tmp.Sync(); err != nil {
		return FileInfo{}, fmt.Errorf("create %s: fsync: %w", f.where(p), err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), err)
	}
	if err := tmp.Close(); err != nil {
		return FileInfo{}, fmt.Errorf("create %s: close: %w", f.where(p), err)
	}
	if err := ctx.Err(); err != nil {
		return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), err)
	}
	if err := f.root.Rename(osName(tmpName), osName(p)); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.EISDIR) {
			return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), ErrIsDir)
		}
		return FileInfo{}, f.fail("create", p, err, ErrNotDir)
	}
	committed = true
	if err := f.syncDir(dir); err != nil {
		return FileInfo{}, fmt.Errorf("create %s: %w", f.where(p), err)
	}
	// Rename keeps the inode, mtime and size, so the temporary file's stat
	// is the new file's.
	return fileInfoOf(p, st), nil
}

func (f *fileFS) Mkdir(ctx context.Context, p string) error {
	p, err := f.arg(ctx, "mkdir", p)
	if err != nil {
		return err
	}
	if err := f.mkdirAll(p); err != nil {
		return f.fail("mkdir", p, err, ErrNotDir)
	}
	return nil
}

func (f *fileFS) Delete(ctx context.Context, p string) error {
	p, err := f.arg(ctx, "delete", p)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("delete %s: %w: the root cannot be deleted", f.where(p), ErrInvalidPath)
	}
	if _, err := f.root.Lstat(osName(p)); err != nil {
		return f.fail("delete", p, err, ErrNotFound)
	}
	if err := f.root.Remove(osName(p)); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("delete %s: %w", f.where(p), ErrNotEmpty)
		}
		return f.fail("delete", p, err, ErrNotFound)
	}
	return nil
}

func (f *fileFS) Rename(ctx context.Context, from, to string) error {
	from, err := f.arg(ctx, "rename", from)
	if err != nil {
		return err
	}
	to, err = f.arg(ctx, "rename", to)
	if err != nil {
		return err
	}
	if from == "" || to == "" {
		return fmt.Errorf("rename %s to %s: %w: the root cannot be renamed", f.where(from), f.where(to), ErrInvalidPath)
	}
	if _, err := f.root.Lstat(osName(from)); err != nil {
		return f.fail("rename", from, err, ErrNotFound)
	}
	if from == to {
		return nil
	}
	if st, err := f.root.Lstat(osName(to)); err == nil && st.IsDir() {
		return fmt.Errorf("rename %s to %s: %w", f.where(from), f.where(to), ErrIsDir)
	}
	if err := f.mkdirAll(parentPath(to)); err != nil {
		return f.fail("rename", to, err, ErrNotDir)
	}
	if err := f.root.Rename(osName(from), osName(to)); err != nil {
		return fmt.Errorf("rename %s to %s: %w", f.where(from), f.where(to), classifyOSErr(err, ErrNotDir))
	}
	if err := f.syncDir(parentPath(to)); err != nil {
		return fmt.Errorf("rename %s to %s: %w", f.where(from), f.where(to), err)
	}
	return nil
}

// arg cleans a path argument and checks the context first, so every
// operation refuses bad paths and cancelled contexts the same way.
func (f *fileFS) arg(ctx context.Context, op, p string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s %s: %w", op, f.where(p), err)
	}
	clean, err := CleanPath(p)
	if err != nil {
		return "", fmt.Errorf("%s in %s: %w", op, f, err)
	}
	return clean, nil
}

func (f *fileFS) mkdirAll(p string) error {
	if p == "" {
		return nil
	}
	if err := f.root.MkdirAll(osName(p), 0o755); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			// MkdirAll reports a file in the way as "exists".
			return fmt.Errorf("%w: %w", ErrNotDir, err)
		}
		return err
	}
	return nil
}

// syncDir makes a rename in dir durable.
func (f *fileFS) syncDir(dir string) error {
	d, err := f.root.Open(osName(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory: %w", err)
	}
	return nil
}

func (f *fileFS) where(p string) string { return f.String() + "/" + p }

// fail wraps an error from the os package with the operation, the path and
// the sentinel callers branch on. notDir is what ENOTDIR means for this
// operation: a path below a file is "not found" to Stat but "not a
// directory" to Create.
func (f *fileFS) fail(op, p string, err error, notDir error) error {
	return fmt.Errorf("%s %s: %w", op, f.where(p), classifyOSErr(err, notDir))
}

func classifyOSErr(err error, notDir error) error {
	var sentinel error
	switch {
	case errors.Is(err, ErrNotDir), errors.Is(err, ErrIsDir), errors.Is(err, ErrNotFound), errors.Is(err, ErrNotEmpty):
		return err
	case errors.Is(err, fs.ErrNotExist):
		sentinel = ErrNotFound
	case errors.Is(err, syscall.ENOTDIR):
		sentinel = notDir
	case errors.Is(err, syscall.EISDIR):
		sentinel = ErrIsDir
	case errors.Is(err, syscall.ENOTEMPTY):
		sentinel = ErrNotEmpty
	case isEscape(err):
		sentinel = ErrInvalidPath
	default:
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// isEscape reports whether os.Root refused to follow a symlink out of the
// root. The os package does not export that error, only its text.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// osName turns a cleaned lake path into a name os.Root accepts.
func osName(p string) string {
	if p == "" {
		return "."
	}
	return filepath.FromSlash(p)
}

func fileInfoOf(p string, st fs.FileInfo) FileInfo {
	fi := FileInfo{Path: p, ModTime: st.ModTime(), IsDir: st.IsDir()}
	if !fi.IsDir {
		fi.Size = st.Size()
		fi.Version = fileVersion(st)
	}
	return fi
}

// fileVersion names a file's content by mtime, size and inode. The inode
// matters because mtime comes from a coarse clock: two Creates of the same
// size within a few milliseconds get the same mtime, but each Create renames
// a new inode into place, so the version still changes.
func fileVersion(st fs.FileInfo) string {
	return fmt.Sprintf("%x-%x-%x", st.ModTime().UnixNano(), st.Size(), fileIdentity(st))
}
