// Package routertest is a router.Namespace over local directories, for unit
// tests of the front ends (FUSE, S3) that run above the Namespace
// interface. It has the namespace's shape ("/", "/lake", mount points) and
// the lakes' semantics (it calls the file:// adapter), but no cache nodes:
// end-to-end tests use a router.Client against real nodes instead.
package routertest

import (
	"context"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// Lakes is a Namespace whose mounts are file:// lakes in a temporary
// directory. It is safe for concurrent use.
type Lakes struct {
	mounts map[string]ufs.FS // mount path -> lake
	dirs   map[string]string // mount path -> its directory on disk
}

var _ router.Namespace = (*Lakes)(nil)

// New mounts one empty file:// lake at each of mountPaths (for example
// "/lake/a"); they are removed when the test ends.
func New(t testing.TB, mountPaths ...string) *Lakes {
	t.Helper()
	l := &Lakes{mounts: map[string]ufs.FS{}, dirs: map[string]string{}}
	for _, mp := range mountPaths {
		dir := t.TempDir()
		fs, err := ufs.Open(context.Background(), "file://"+filepath.ToSlash(dir))
		if err != nil {
			t.Fatalf("routertest: open lake for %s: %v", mp, err)
		}
		t.Cleanup(func() { fs.Close() })
		l.mounts[mp] = fs
		l.dirs[mp] = dir
	}
	return l
}

// Dir is the directory on disk that holds mount mountPath's files.
func (l *Lakes) Dir(mountPath string) string { return l.dirs[mountPath] }

// resolve maps a namespace path to its lake and the path inside it.
func (l *Lakes) resolve(p string) (string, ufs.FS, string, error) {
	p, err := router.CleanNamespacePath(p)
	if err != nil {
		return "", nil, "", err
	}
	for mp, fs := range l.mounts {
		if p == mp {
			return mp, fs, "", nil
		}
		if strings.HasPrefix(p, mp+"/") {
			return mp, fs, p[len(mp)+1:], nil
		}
	}
	return p, nil, "", nil
}

// virtual lists the names below p that lead to mounts ("lake" for "/").
func (l *Lakes) virtual(p string) []string {
	prefix := strings.TrimSuffix(p, "/") + "/"
	var names []string
	for mp := range l.mounts {
		if rest, ok := strings.CutPrefix(mp, prefix); ok {
			name, _, _ := strings.Cut(rest, "/")
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

func entry(mp string, fi ufs.FileInfo) router.Entry {
	p := mp
	if fi.Path != "" {
		p += "/" + fi.Path
	}
	return router.Entry{Path: p, Size: fi.Size, ModTime: fi.ModTime, IsDir: fi.IsDir, Version: fi.Version}
}

func noMount(p string) error { return fmt.Errorf("%s: %w", p, cachenode.ErrNoMount) }

func (l *Lakes) Stat(ctx context.Context, p string) (router.Entry, error) {
	mp, fs, rel, err := l.resolve(p)
	if err != nil {
		return router.Entry{}, err
	}
	if fs == nil {
		if mp == "/" || len(l.virtual(mp)) > 0 {
			return router.Entry{Path: mp, IsDir: true}, nil
		}
		return router.Entry{}, fmt.Errorf("stat %s: %w", mp, ufs.ErrNotFound)
	}
	fi, err := fs.Stat(ctx, rel)
	if err != nil {
		return router.Entry{}, err
	}
	return entry(mp, fi), nil
}

func (l *Lakes) List(ctx context.Context, dir, token string, limit int) ([]router.Entry, string, error) {
	mp, fs, rel, err := l.resolve(dir)
	if err != nil {
		return nil, "", err
	}
	if fs == nil {
		names := l.virtual(mp)
		if len(names) == 0 {
			return nil, "", fmt.Errorf("list %s: %w", mp, ufs.ErrNotFound)
		}
		var out []router.Entry
		for _, n := range names {
			out = append(out, router.Entry{Path: path.Join(mp, n), IsDir: true})
		}
		return out, "", nil
	}
	page, err := fs.List(ctx, rel, token, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]router.Entry, 0, len(page.Entries))
	for _, fi := range page.Entries {
		out = append(out, entry(mp, fi))
	}
	return out, page.Next, nil
}

func (l *Lakes) OpenReader(e router.Entry) (router.Reader, error) {
	_, fs, rel, err := l.resolve(e.Path)
	if err != nil {
		return nil, err
	}
	if fs == nil || e.IsDir {
		return nil, fmt.Errorf("open %s: %w", e.Path, ufs.ErrIsDir)
	}
	return &reader{fs: fs, rel: rel, e: e, limit: e.Size}, nil
}

func (l *Lakes) Put(ctx context.Context, p string, r io.Reader) (router.Entry, error) {
	return l.PutAttrs(ctx, p, r, nil)
}

// PutAttrs stores attrs in the file's extended attributes (the file://
// adapter's ufs.AttrFS).
func (l *Lakes) PutAttrs(ctx context.Context, p string, r io.Reader, attrs ufs.Attrs) (router.Entry, error) {
	mp, fs, rel, err := l.resolve(p)
	if err != nil {
		return router.Entry{}, err
	}
	if fs == nil || rel == "" {
		return router.Entry{}, noMount(p)
	}
	fi, err := fs.(ufs.AttrFS).CreateAttrs(ctx, rel, r, attrs)
	if err != nil {
		return router.Entry{}, err
	}
	return entry(mp, fi), nil
}

func (l *Lakes) StatAttrs(ctx context.Context, p string) (router.Entry, ufs.Attrs, error) {
	mp, fs, rel, err := l.resolve(p)
	if err != nil {
		return router.Entry{}, nil, err
	}
	if fs == nil {
		e, err := l.Stat(ctx, p)
		return e, nil, err
	}
	fi, attrs, err := fs.(ufs.AttrFS).StatAttrs(ctx, rel)
	if err != nil {
		return router.Entry{}, nil, err
	}
	return entry(mp, fi), attrs, nil
}

func (l *Lakes) Remove(ctx context.Context, p string) error {
	_, fs, rel, err := l.resolve(p)
	if err != nil {
		return err
	}
	if fs == nil || rel == "" {
		return noMount(p)
	}
	return fs.Delete(ctx, rel)
}

func (l *Lakes) Mkdir(ctx context.Context, p string) error {
	_, fs, rel, err := l.resolve(p)
	if err != nil {
		return err
	}
	if fs == nil || rel == "" {
		return noMount(p)
	}
	return fs.Mkdir(ctx, rel)
}

func (l *Lakes) Rename(ctx context.Context, from, to string) error {
	mf, fs, relFrom, err := l.resolve(from)
	if err != nil {
		return err
	}
	mt, _, relTo, err := l.resolve(to)
	if err != nil {
		return err
	}
	if fs == nil || relFrom == "" || relTo == "" {
		return noMount(from)
	}
	if mf != mt {
		return fmt.Errorf("rename %s to %s: %w: both must be in one mount", from, to, ufs.ErrInvalidPath)
	}
	return fs.Rename(ctx, relFrom, relTo)
}

// reader reads one version through the lake, refusing a changed file.
type reader struct {
	fs    ufs.FS
	rel   string
	e     router.Entry
	limit int64
}

func (r *reader) Entry() router.Entry { return r.e }
func (r *reader) Limit(end int64)     { r.limit = end }
func (r *reader) Close() error        { return nil }

func (r *reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= r.e.Size {
		return 0, io.EOF
	}
	rc, err := r.fs.ReadRange(ctx, r.rel, r.e.Version, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if err == io.ErrUnexpectedEOF || (err == nil && off+int64(n) >= r.e.Size) {
		err = io.EOF
	}
	return n, err
}
