package fusefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lakemesh/lakemesh/router"
)

// copyBuffer is the piece a copy-in reads at a time.
const copyBuffer = 1 << 20

// putTries bounds the Puts of a spool whose node failed mid-write.
const putTries = 3

// readHandle is a file open for reading: one version, read through the
// router (which reads ahead on sequential access and fetches exact ranges
// otherwise). It holds no buffer of its own.
type readHandle struct {
	n       *node
	r       *followReader
	version string
}

var (
	_ fs.FileReader   = (*readHandle)(nil)
	_ fs.FileFsyncer  = (*readHandle)(nil)
	_ fs.FileReleaser = (*readHandle)(nil)
)

func (h *readHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	octx, cancel := h.n.fsys.opContext()
	defer cancel()
	k, err := h.r.ReadAt(octx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, h.n.fsys.errno(octx, "read", h.r.Entry().Path, err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// Fsync of a file open for reading has nothing to write.
func (h *readHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

func (h *readHandle) Release(ctx context.Context) syscall.Errno {
	h.r.Close()
	h.n.closeReader(h.version, h.r)
	return 0
}

// writeHandle is a file open for writing. Writes go to a spool file on
// local disk; a flush (close) or fsync uploads the whole spool with one
// Put, which returns once the file's write mode is satisfied.
//
// The spool starts empty for a new or truncated file; otherwise the
// opened version is copied into it on the first write or truncate
// (until then reads go to that version).
type writeHandle struct {
	n *node
	r *followReader // the version opened; nil when the handle starts empty

	mu       sync.Mutex // serializes writes, truncates, reads and flushes; taken before node.mu
	base     int64      // size of the opened version
	spool    *os.File   // nil until the first write or truncate
	loaded   bool       // the spool holds the content (an absent spool is empty)
	dirty    bool       // the spool has changes the lake does not
	stream   *upload    // the upload following the appends, if any
	noStream bool       // bytes were rewritten since the last flush: upload at flush only
	spoolErr error      // a write the spool lost in the background: every later call fails
	// lent is the node's journal file the spool is, when the node lent
	// one (lend.go); committed once it is the journal's, after which
	// the next change copies it to a spool of the handle's own first.
	lent      *router.LentSpool
	committed bool
	lentGone  bool // its commit failed: flushes Put the spool instead

	size  atomic.Int64 // the content's size, once loaded
	local atomic.Bool  // mirrors dirty for node.attrs, which reads it without mu
	mtime atomic.Int64 // unix nanoseconds of the last change
}

var (
	_ fs.FileReader   = (*writeHandle)(nil)
	_ fs.FileWriter   = (*writeHandle)(nil)
	_ fs.FileFlusher  = (*writeHandle)(nil)
	_ fs.FileFsyncer  = (*writeHandle)(nil)
	_ fs.FileReleaser = (*writeHandle)(nil)
)

func newWriteHandle(n *node, r *followReader, e router.Entry, empty bool) *writeHandle {
	w := &writeHandle{n: n, r: r, base: e.Size}
	w.mtime.Store(time.Now().UnixNano())
	if empty || e.Size == 0 {
		// A new file, or one opened with O_TRUNC, must reach the lake
		// even if nothing is written to it.
		w.loaded = true
		w.setDirty(empty)
	}
	return w
}

// setDirty records whether the spool has changes the lake does not.
func (w *writeHandle) setDirty(dirty bool) {
	w.dirty = dirty
	w.local.Store(dirty)
}

// localSize is the file's size as this handle has it, when it has changes
// not yet in the lake.
func (w *writeHandle) localSize() (int64, bool) {
	return w.size.Load(), w.local.Load()
}

func (w *writeHandle) modTime() time.Time { return time.Unix(0, w.mtime.Load()) }

// load makes the spool hold the content: the opened version's first
// limit bytes (all of them when limit < 0) are copied in.
func (w *writeHandle) load(limit int64) syscall.Errno {
	if w.spool == nil {
		if errno := w.openSpool(); errno != 0 {
			return errno
		}
	}
	if w.loaded {
		return 0
	}
	n := w.base
	if limit >= 0 {
		n = min(n, limit)
	}
	if n > 0 {
		if errno := w.copyIn(n); errno != 0 {
			return errno
		}
	}
	w.loaded = true
	w.size.Store(n)
	return 0
}

// copyIn copies the opened version's first n bytes into the spool.
func (w *writeHandle) copyIn(n int64) syscall.Errno {
	fsys := w.n.fsys
	release := fsys.acquireUpload()
	defer release()
	ctx, cancel := fsys.uploadContext(n)
	defer cancel()
	rerr, werr := w.copySpool(n, func(b []byte, off int64) (int, error) { return w.r.ReadAt(ctx, b, off) })
	switch {
	case werr != nil:
		return fsys.errno(nil, "spool", w.r.Entry().Path, werr)
	case rerr != nil:
		return fsys.errno(ctx, "copy-in", w.r.Entry().Path, rerr)
	}
	return 0
}

// copySpool copies the first n bytes that readAt reads into the spool,
// and returns the read's error (io.ErrUnexpectedEOF for fewer than n
// bytes) or the spool's.
func (w *writeHandle) copySpool(n int64, readAt func([]byte, int64) (int, error)) (rerr, werr error) {
	buf := make([]byte, min(n, copyBuffer))
	for off := int64(0); off < n; {
		k, err := readAt(buf[:min(int64(len(buf)), n-off)], off)
		if k > 0 {
			if _, err := w.writeAt(buf[:k], off); err != nil {
				return nil, err
			}
			off += int64(k)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off >= n) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err, nil
		}
	}
	return nil, nil
}

func (w *writeHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.spoolErr != nil {
		return 0, spoolErrno(w.spoolErr)
	}
	if errno := w.reopen(); errno != 0 {
		return 0, errno
	}
	if errno := w.load(-1); errno != 0 {
		return 0, errno
	}
	if w.lent != nil {
		// Into the node's journal: no stream to follow the appends.
		k, err := w.lent.WriteAt(data, off)
		if k > 0 {
			w.grew(max(w.size.Load(), off+int64(k)))
		}
		if err != nil {
			return uint32(k), spoolErrno(err)
		}
		return uint32(k), 0
	}
	old := w.size.Load()
	if w.stream != nil && off == old {
		// An append to a streamed file: through the upload's window.
		err := w.stream.append(data)
		if err == nil {
			w.grew(off + int64(len(data)))
			return uint32(len(data)), 0
		}
		// The spool lost bytes, or the Put failed: go on without it
		// (appends the window took are on the spool once it stopped).
		w.stopStream()
		if w.spoolErr != nil {
			return 0, spoolErrno(w.spoolErr)
		}
	}
	if w.stream != nil {
		// Rewrites what the upload may have sent, or leaves a hole.
		w.stopStream()
		if w.spoolErr != nil {
			return 0, spoolErrno(w.spoolErr)
		}
	}
	k, err := w.spool.WriteAt(data, off)
	if err != nil {
		return uint32(k), spoolErrno(err)
	}
	if off < old {
		w.noStream = true
	}
	size := max(old, off+int64(k))
	w.grew(size)
	w.followAppends(size)
	return uint32(k), 0
}

// grew records a write that left the content size bytes long.
func (w *writeHandle) grew(size int64) {
	w.size.Store(size)
	w.mtime.Store(time.Now().UnixNano())
	w.setDirty(true)
}

// followAppends starts an upload that follows the appends once a file
// written in order is large enough; the spool holds its first size bytes.
func (w *writeHandle) followAppends(size int64) {
	if w.stream != nil || w.noStream || size < streamAfter || w.lent != nil {
		return
	}
	p, ok := w.n.path()
	if !ok {
		return
	}
	release, ok := w.n.fsys.tryAcquireUpload()
	if !ok {
		return // every upload slot is busy: upload at flush
	}
	w.stream = w.n.fsys.startUpload(p, w.spool, size, release)
}

// stopStream aborts the streaming upload, if any, once its window is on
// the spool, and uploads at flush only until then.
func (w *writeHandle) stopStream() {
	if u := w.stream; u != nil {
		w.stream = nil
		u.abort()
		w.keepSpoolErr(u)
	}
	w.noStream = true
}

// keepSpoolErr records a write the spool lost behind a finished stream.
func (w *writeHandle) keepSpoolErr(u *upload) {
	if err := u.spoolErr(); err != nil && w.spoolErr == nil {
		p, _ := w.n.path()
		w.n.fsys.log.Error("spool write failed: the file's changes are lost", "path", p, "err", err)
		w.spoolErr = err
	}
}

// spoolErrno passes the spool disk's own errors (ENOSPC, EDQUOT) through.
func spoolErrno(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}

func (w *writeHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.loaded {
		if w.r == nil {
			return fuse.ReadResultData(nil), 0
		}
		octx, cancel := w.n.fsys.opContext()
		defer cancel()
		k, err := w.r.ReadAt(octx, dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, w.n.fsys.errno(octx, "read", w.r.Entry().Path, err)
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	if w.spoolErr != nil {
		return nil, spoolErrno(w.spoolErr)
	}
	size := w.size.Load()
	if w.spool == nil || off >= size {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), size-off)]
	var k int
	var err error
	if w.stream != nil {
		k, err = w.stream.readAt(dest, off) // the window may hold the bytes
	} else {
		k, err = w.spool.ReadAt(dest, off)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, spoolErrno(err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// truncate sets the content's size; a cut to zero copies nothing in.
func (w *writeHandle) truncate(size int64) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	if errno := w.reopen(); errno != 0 {
		return errno
	}
	if size == 0 && !w.loaded {
		w.loaded = true
	}
	if w.stream != nil || size < w.size.Load() || !w.loaded {
		w.stopStream()
	}
	if w.spoolErr != nil {
		return spoolErrno(w.spoolErr)
	}
	if size == 0 {
		w.noStream = false // empty again: appends may stream anew
	}
	if errno := w.load(size); errno != 0 {
		return errno
	}
	truncate := w.spool.Truncate
	if w.lent != nil {
		truncate = w.lent.Truncate
	}
	if err := truncate(size); err != nil {
		return spoolErrno(err)
	}
	w.size.Store(size)
	w.mtime.Store(time.Now().UnixNano())
	w.setDirty(true)
	return 0
}

func (w *writeHandle) Flush(ctx context.Context) syscall.Errno { return w.flush() }

func (w *writeHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return w.flush() }

// flush uploads the spool when it has changes.
func (w *writeHandle) flush() syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *writeHandle) flushLocked() syscall.Errno {
	if !w.dirty {
		return 0
	}
	if w.n.dropped() {
		w.stopStream()
		w.setDirty(false) // unlinked or replaced while open: nowhere to write
		return 0
	}
	if w.spoolErr != nil {
		return spoolErrno(w.spoolErr)
	}
	p, ok := w.n.path()
	if !ok {
		return 0
	}
	fsys := w.n.fsys
	size := w.size.Load()
	w.noStream = false
	if w.lent != nil && !w.committed && !w.lentGone {
		if w.lent.Path() == p {
			ctx, cancel := fsys.uploadContext(size)
			e, err := w.lent.Commit(ctx, size)
			cancel()
			if err == nil {
				fsys.log.Debug("file written into a lent journal file", "path", p, "bytes", size, "version", e.Version)
				w.committed = true
				w.setDirty(false)
				w.n.wrote(e)
				return 0
			}
			fsys.log.Warn("the node did not take the file written into its journal; writing it over gRPC", "path", p, "err", err)
		}
		w.lentGone = true // renamed since, or refused: Put the bytes
	}
	if u := w.stream; u != nil {
		w.stream = nil
		e, err := u.finish(size, fsys.cfg.OpTimeout+time.Duration(size/fsys.cfg.WriteRate)*time.Second)
		w.keepSpoolErr(u)
		if err == nil {
			fsys.log.Debug("file written while it was written", "path", p, "bytes", size, "version", e.Version)
			w.setDirty(false)
			w.n.wrote(e)
			return 0
		}
		if w.spoolErr != nil {
			return fsys.errno(nil, "flush", p, err) // the spool cannot be uploaded instead
		}
		fsys.log.Warn("streaming upload failed; uploading the spool whole", "path", p, "err", err)
	}
	release := fsys.acquireUpload()
	defer release()
	ctx, cancel := fsys.uploadContext(size)
	defer cancel()
	start := time.Now()
	var e router.Entry
	var err error
	for try := 0; try < putTries; try++ {
		var body io.Reader = bytes.NewReader(nil)
		if w.spool != nil {
			body = io.NewSectionReader(w.spool, 0, size)
		}
		// The spool can be read again: a node that failed mid-write is
		// skipped by the next try.
		if e, err = fsys.ns.Put(ctx, p, body); !errors.Is(err, router.ErrWriteInterrupted) {
			break
		}
	}
	if err != nil {
		return fsys.errno(ctx, "flush", p, err)
	}
	fsys.log.Debug("file written", "path", p, "bytes", size, "version", e.Version, "took", time.Since(start))
	w.setDirty(false)
	w.n.wrote(e)
	return 0
}

// Release uploads what a failed flush left (the application can no
// longer be told if this fails: it is logged), then drops the spool.
func (w *writeHandle) Release(ctx context.Context) syscall.Errno {
	w.release()
	return 0
}

func (w *writeHandle) release() {
	w.mu.Lock()
	if errno := w.flushLocked(); errno != 0 {
		p, _ := w.n.path()
		w.n.fsys.log.Error("writes lost: the file could not be written to the lake when it was closed", "path", p, "errno", errno.Error())
	}
	if w.stream != nil {
		w.stream.abort() // left by a flush that had nowhere to write
		w.stream = nil
	}
	if w.lent != nil {
		w.lent.Close() // a file never committed is removed by its node
		w.lent = nil
	} else {
		dropSpool(w.spool)
	}
	w.spool = nil
	w.mu.Unlock()
	if w.r != nil {
		w.r.Close()
		w.n.dropFollower(w.r)
	}
	w.n.closeWriter(w)
	if w.n.isLocal() {
		// Never reached the lake: it is gone.
		w.n.markUnlinked()
		if name, parent := w.n.Parent(); parent != nil {
			if pn, ok := parent.Operations().(*node); ok {
				pn.setPending(name, false)
			}
		}
	}
}
