package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lakemesh/lakemesh/router"
)

// dirStream is one directory's listing as a fs.DirStream. It asks the
// namespace for a page (Namespace.List with the previous page's token)
// only when the kernel has taken every entry of the page before, so a
// directory of millions of entries costs one page of memory and a reader
// that stops early costs the pages it read.
//
// The stream yields ".", "..", the listing, then the names this mount
// created and has not written to the lake yet (so a new file shows in its
// directory at once). Offsets count entries from the start; a seek to an
// offset other than the current one lists again from the start.
type dirStream struct {
	fsys     *FS
	dir      string   // namespace path
	pageSize int      // entries per List; 0 is the node's default
	local    []string // names created here when the stream opened

	head  []fuse.DirEntry // "." and "..", not yet produced
	page  []router.Entry  // the current page
	i     int             // next entry of page
	token string          // next page's token
	done  bool            // the listing's last page was fetched
	tail  []string        // local names the listing did not have
	seen  map[string]bool // local names the listing had
	err   syscall.Errno   // a failed List, produced once by Next
	off   uint64          // entries produced so far

	last   router.Entry // the listing entry Next produced last
	lastOK bool
}

var _ fs.DirStream = (*dirStream)(nil)

func newDirStream(fsys *FS, dir string, local []string) *dirStream {
	s := &dirStream{fsys: fsys, dir: dir, pageSize: fsys.cfg.ListPageSize, local: local}
	s.reset()
	return s
}

// reset rewinds the stream to its first entry.
func (s *dirStream) reset() {
	s.head = []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}
	s.page, s.i, s.token, s.done = nil, 0, "", false
	s.tail, s.seen, s.err, s.off = nil, nil, 0, 0
	s.lastOK = false
}

func (s *dirStream) HasNext() bool {
	if s.err != 0 || len(s.head) > 0 {
		return true
	}
	for s.i >= len(s.page) && !s.done {
		s.fetch()
		if s.err != 0 {
			return true
		}
	}
	return s.i < len(s.page) || len(s.tail) > 0
}

// fetch reads the next page of the listing (which may hold no entries
// before the end; the caller loops).
func (s *dirStream) fetch() {
	ctx, cancel := s.fsys.opContext()
	defer cancel()
	entries, next, err := s.fsys.ns.List(ctx, s.dir, s.token, s.pageSize)
	if err != nil {
		s.err = s.fsys.errno(ctx, "readdir", s.dir, err)
		return
	}
	page := entries[:0]
	for _, e := range entries {
		name := baseName(e.Path)
		if checkName(name) != 0 {
			// A key no POSIX name can stand for (over 255 bytes).
			s.fsys.log.Debug("entry not shown: its name cannot be a file name", "path", e.Path)
			continue
		}
		if len(s.local) > 0 {
			if s.seen == nil {
				s.seen = map[string]bool{}
			}
			s.seen[name] = true
		}
		page = append(page, e)
	}
	s.page, s.i, s.token, s.done = page, 0, next, next == ""
	if s.done {
		for _, name := range s.local {
			if !s.seen[name] {
				s.tail = append(s.tail, name)
			}
		}
	}
}

func (s *dirStream) Next() (fuse.DirEntry, syscall.Errno) {
	s.lastOK = false
	var de fuse.DirEntry
	switch {
	case s.err != 0:
		errno := s.err
		// The error ends the stream; a seek to 0 starts it again.
		s.err, s.done, s.page, s.tail = 0, true, nil, nil
		return fuse.DirEntry{}, errno
	case len(s.head) > 0:
		de, s.head = s.head[0], s.head[1:]
	case s.i < len(s.page):
		e := s.page[s.i]
		s.i++
		de = fuse.DirEntry{Name: baseName(e.Path), Mode: syscall.S_IFREG}
		if e.IsDir {
			de.Mode = syscall.S_IFDIR
		}
		s.last, s.lastOK = e, true
	case len(s.tail) > 0:
		de = fuse.DirEntry{Name: s.tail[0], Mode: syscall.S_IFREG}
		s.tail = s.tail[1:]
	default:
		return fuse.DirEntry{}, syscall.EINVAL // Next without HasNext
	}
	s.off++
	de.Off = s.off
	return de, 0
}

// Seekdir moves to the entry after the first off entries. Going back
// lists again from the start: the stream never keeps what it produced.
func (s *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == s.off {
		return 0
	}
	s.reset()
	for s.off < off && s.HasNext() {
		if _, errno := s.Next(); errno != 0 {
			return errno
		}
	}
	return 0
}

func (s *dirStream) Close() { s.page, s.tail, s.seen = nil, nil, nil }

// dirHandle is an open directory. It answers READDIRPLUS lookups from the
// entry it just listed, so "ls -l" of a large directory costs its List
// pages and no Stat per entry.
type dirHandle struct {
	n *node
	s *dirStream
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileReleasedirer = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
)

// OpendirHandle opens a directory for listing; nothing is fetched yet.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	return &dirHandle{n: n, s: newDirStream(n.fsys, p, n.pendingNames())}, 0, 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if !d.s.HasNext() {
		return nil, 0
	}
	de, errno := d.s.Next()
	if errno != 0 {
		return nil, errno
	}
	return &de, 0
}

func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if d.s.lastOK && baseName(d.s.last.Path) == name {
		return d.n.child(ctx, name, d.s.last, out), 0
	}
	return d.n.Lookup(ctx, name, out)
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.s.Seekdir(ctx, off)
}

func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) { d.s.Close() }

// Fsyncdir succeeds: creates, renames and removes reach the namespace
// before they return (a new file's content at its flush).
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }
