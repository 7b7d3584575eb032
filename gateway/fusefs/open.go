package fusefs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lakemesh/lakemesh/router"
)

// Setattr truncates (through the handle it came with, or by rewriting the
// file); mode, owner and times are not stored and are accepted as they are.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(fh, int64(size)); errno != 0 {
			return errno
		}
	}
	p, _ := n.path()
	n.attrs(&out.Attr)
	out.SetTimeout(n.fsys.ttl(p))
	return 0
}

// truncate sets the size of the file: through the handle it came with
// (ftruncate), or by spooling the lake's file, cutting it and writing it
// back (truncate).
func (n *node) truncate(fh fs.FileHandle, size int64) syscall.Errno {
	if n.IsDir() {
		return syscall.EISDIR
	}
	if n.fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	if w, ok := fh.(*writeHandle); ok {
		return w.truncate(size) // ftruncate: uploaded at the handle's flush
	}
	// truncate(2): cut the lake's file now. Handles open for writing keep
	// their spools; the last flush wins, as between any two writers.
	p, ok := n.path()
	if !ok {
		return syscall.ENOENT
	}
	e, errno := n.current(p, freshFor)
	if errno != 0 {
		return errno
	}
	if e.Size == size {
		return 0
	}
	w, errno := n.openWriter(p, e, size == 0)
	if errno != 0 {
		return errno
	}
	defer w.release()
	if errno := w.truncate(size); errno != 0 {
		return errno
	}
	return w.flush()
}

// Open opens a file for reading at its current version, or for writing
// through a spool.
//
// An open for reading takes the entry the kernel was last given while it
// is within the path's TTL: for that long the kernel answers stat and
// lookup from the same entry without asking, and once it expires the
// kernel looks the path up (refreshing the entry) before it opens. So
// opening a file the kernel knows costs no Stat, as a second epoch over
// many small files needs, and an open reads the version stat shows. An
// open for writing asks unless the entry is a moment old.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p, ok := n.path()
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if write {
		if errno := n.fsys.changeable(p); errno != 0 {
			return nil, 0, errno
		}
	}
	if n.isLocal() {
		// Created here and still being written by another handle:
		// write it to the lake first, so this handle sees its content.
		if errno := n.flushWriters(); errno != 0 {
			return nil, 0, errno
		}
		if n.isLocal() {
			return nil, 0, syscall.ENOENT // its writer never wrote it
		}
	}
	maxAge := n.fsys.ttl(p)
	if write {
		maxAge = freshFor
	}
	e, errno := n.current(p, maxAge)
	if errno != 0 {
		return nil, 0, errno
	}
	if write {
		w, errno := n.openWriter(p, e, flags&syscall.O_TRUNC != 0)
		return w, n.fsys.writeOpenFlags.Load(), errno
	}
	return n.openReader(p, e)
}

func (n *node) isLocal() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.local
}

// openReader opens version e of the file for reading. The kernel keeps
// the pages it cached when they are of the same version; when a handle of
// another version is still open, the new handle bypasses the page cache,
// so no reader ever sees pages of two versions. A read handle has nothing
// to flush, so its close sends no FLUSH (FOPEN_NOFLUSH).
func (n *node) openReader(p string, e router.Entry) (fs.FileHandle, uint32, syscall.Errno) {
	lr, err := n.fsys.ns.OpenReader(e)
	if err != nil {
		return nil, 0, n.fsys.errno(nil, "open", p, err)
	}
	r := newFollowReader(lr)
	n.addFollower(r)
	flags := uint32(fuse.FOPEN_NOFLUSH)
	n.mu.Lock()
	otherOpen := false
	for v, k := range n.readers {
		if v != e.Version && k > 0 {
			otherOpen = true
		}
	}
	switch {
	case otherOpen || len(n.writers) > 0:
		flags |= fuse.FOPEN_DIRECT_IO
	case n.cacheVersion == e.Version && e.Version != "":
		flags |= fuse.FOPEN_KEEP_CACHE
	default:
		n.cacheVersion = e.Version // opening without KEEP_CACHE drops the old pages
	}
	if n.readers == nil {
		n.readers = map[string]int{}
	}
	n.readers[e.Version]++
	n.mu.Unlock()
	return &readHandle{n: n, r: r, version: e.Version}, flags, 0
}

// closeReader forgets a read handle of version v.
func (n *node) closeReader(v string, r *followReader) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.followers, r)
	if n.readers[v]--; n.readers[v] <= 0 {
		delete(n.readers, v)
	}
}

// openWriter opens a write handle on version e of the file (empty when
// truncate is set or the file is new).
func (n *node) openWriter(p string, e router.Entry, truncate bool) (*writeHandle, syscall.Errno) {
	var r *followReader
	if !truncate && e.Size > 0 {
		lr, err := n.fsys.ns.OpenReader(e)
		if err != nil {
			return nil, n.fsys.errno(nil, "open", p, err)
		}
		r = newFollowReader(lr)
		n.addFollower(r)
	}
	w := newWriteHandle(n, r, e, truncate)
	n.mu.Lock()
	if n.writers == nil {
		n.writers = map[*writeHandle]bool{}
	}
	n.writers[w] = true
	n.cacheVersion = "" // pages written here are not of any lake version yet
	n.mu.Unlock()
	return w, 0
}

// wrote records that the node's content is now version e in the lake.
func (n *node) wrote(e router.Entry) {
	n.mu.Lock()
	n.entry, n.statAt, n.local = e, time.Now(), false
	n.mu.Unlock()
	if name, parent := n.Parent(); parent != nil {
		if pn, ok := parent.Operations().(*node); ok {
			pn.setPending(name, false)
		}
	}
}

// closeWriter forgets a write handle.
func (n *node) closeWriter(w *writeHandle) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.writers, w)
}

// dropped says whether writes to the node go nowhere: it was unlinked or
// replaced while open.
func (n *node) dropped() bool {
	n.mu.Lock()
	unlinked := n.unlinked
	n.mu.Unlock()
	_, inTree := n.path()
	return unlinked || !inTree
}
