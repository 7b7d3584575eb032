package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/lakemesh/lakemesh/router"
)

// streamAfter is the size from which a file written from its start by
// appends alone is uploaded while it is written: its Put starts and
// follows the spool, so close waits for the last bytes rather than the
// whole file. Smaller files are uploaded whole at close.
const streamAfter = 8 << 20

// The write-behind window of a streamed file: its appends are copied into
// windowBuffers buffers of windowBuffer bytes, each holding the bytes of
// one windowBuffer-aligned range of the file. A buffer is written to the
// spool in the background once full, and is reused once on the spool and
// sent. So an append costs one copy in this process, and the upload sends
// the window's bytes from the window itself (NextChunk), never reading the
// spool back while it keeps up.
//
// The spool is written through the kernel's page cache. It is removed once
// the file is closed and in the region, usually before the kernel would
// write those pages (dirty_expire_centisecs, 30 s by default): the spool
// is the copy for a failed upload to start again from, and while uploads
// succeed its bytes never reach the disk. With direct I/O instead, every
// byte of a write-back checkpoint went to the disk twice, the spool and
// the node's journal, on a machine where both share one disk: the 2 GiB
// checkpoint measured 288-316 MB/s that way (0.59x a local directory),
// 402-433 MB/s through the page cache (0.79x), which costs the mount
// more CPU, and the disk less. Each
// stream's window holds at most windowBuffers*windowBuffer bytes
// (DefaultMaxUploads streams at once), and the transport a piece or two
// more: a piece that leaves the window while the transport still sends
// from it keeps its buffer until the transport is done.
const (
	windowBuffer  = 2 << 20
	windowBuffers = 4
	// spoolWriters is how many pieces a window writes to the spool at
	// once.
	spoolWriters = 2
	// windowStall is how long an append waits for the upload to take
	// bytes from a full window before the window lets the upload read
	// them from the spool instead.
	windowStall = time.Second
)

// errUploadAborted ends a streaming upload that can no longer be the
// file's content (a write or truncate touched what it may have sent).
var errUploadAborted = errors.New("streaming upload aborted: the file was changed out of order")

// upload is a Put that follows a spool while appends go on. Appends go
// through its write-behind window (append); its reader hands Put the
// file's bytes up to the append end, from the window or the spool, waits
// for more until the upload is sealed (flush), and then ends at the
// sealed size. An aborted upload fails its Put, which leaves the lake's
// old content. Once its Put has returned, close (called by finish and
// abort) writes what the window holds to the spool, so the spool holds
// the whole file again.
type upload struct {
	spool   *os.File
	buffers *sync.Pool
	cancel  context.CancelFunc
	done    chan struct{}  // closed when Put returned
	written sync.WaitGroup // the window's writers

	mu      sync.Mutex // guards the fields below
	cond    *sync.Cond // signalled when any of them changes
	avail   int64      // the file's size: bytes that may be sent
	pos     int64      // bytes sent
	sealed  bool       // no bytes past avail will come
	aborted bool
	window  []*piece // in file order, the last ending at avail; bytes below window[0] are on the spool
	closing bool     // the writer writes the last, partial piece too, then stops
	werr    error    // the first spool write that failed
	// stalledAt is pos when an append last waited windowStall for room;
	// while pos stays there, full windows make room without waiting.
	stalledAt int64

	entry router.Entry // Put's result, once done
	err   error
}

// piece is one buffer of the window: the bytes [base+start, base+end) of
// the file at buf[start:end], where base is a multiple of windowBuffer.
type piece struct {
	base       int64
	buf        []byte
	start, end int
	onSpool    bool
	writing    bool
	// lent counts the chunks of buf the Put's transport may still be
	// sending (NextChunk); while any is, buf is not reused, and a piece
	// dropped from the window (dropped) gives its buffer back with the
	// last of them.
	lent    int
	dropped bool
}

func (p *piece) from() int64 { return p.base + int64(p.start) }
func (p *piece) to() int64   { return p.base + int64(p.end) }
func (p *piece) full() bool  { return p.end == len(p.buf) }

// startUpload starts a Put of p that follows spool from its start, with
// avail bytes of it on the spool already.
func (f *FS) startUpload(p string, spool *os.File, avail int64, release func()) *upload {
	ctx, cancel := context.WithCancel(f.ctx)
	u := &upload{spool: spool, buffers: &f.windowBuffers, cancel: cancel, done: make(chan struct{}), avail: avail, stalledAt: -1}
	u.cond = sync.NewCond(&u.mu)
	for range spoolWriters {
		u.written.Go(u.writeBehind)
	}
	go func() {
		defer close(u.done)
		defer release()
		e, err := f.ns.Put(ctx, p, u)
		u.mu.Lock()
		u.entry, u.err = e, err
		u.aborted = u.aborted || err != nil
		u.cond.Broadcast()
		u.mu.Unlock()
	}()
	return u
}

// append adds data at the end of the file: into the window, waiting while
// the window is full of bytes not yet on the spool or not yet sent. It
// fails with the spool's write error, or with errUploadAborted once the
// Put failed (the caller then stops the stream and writes to the spool
// itself).
//
// Waiting for the upload paces the writer to the upload, whose bytes come
// from memory. Once an append has waited windowStall for room, and until
// the Put sends another byte, the window gives up pieces the Put has not
// sent yet (once they are on the spool), which the Put then reads back
// from the spool.
func (u *upload) append(data []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var waited time.Time
	for len(data) > 0 {
		switch {
		case u.werr != nil:
			return u.werr
		case u.aborted || u.sealed:
			return errUploadAborted
		}
		var last *piece
		if n := len(u.window); n > 0 && !u.window[n-1].full() {
			last = u.window[n-1]
		}
		if last == nil {
			if !waited.IsZero() && time.Since(waited) >= windowStall {
				u.stalledAt = u.pos
			}
			if !u.makeRoom(u.stalledAt == u.pos) {
				if waited.IsZero() {
					waited = time.Now()
					wake := time.AfterFunc(windowStall, func() { u.mu.Lock(); u.cond.Broadcast(); u.mu.Unlock() })
					defer wake.Stop()
				}
				u.cond.Wait()
				continue
			}
			waited = time.Time{}
			base := u.avail &^ (windowBuffer - 1)
			start := int(u.avail - base)
			last = &piece{base: base, buf: u.getBuffer(), start: start, end: start}
			u.window = append(u.window, last)
		}
		k := copy(last.buf[last.end:], data)
		last.end += k
		u.avail += int64(k)
		data = data[k:]
		u.cond.Broadcast()
	}
	return nil
}

// makeRoom says whether the window may take another piece. A full window
// makes room by dropping its oldest piece once that is on the spool and
// sent, or only on the spool when the upload stalled (it then reads the
// piece's bytes from the spool). u.mu is held.
func (u *upload) makeRoom(stalled bool) bool {
	u.trim()
	if len(u.window) < windowBuffers {
		return true
	}
	if p := u.window[0]; p.onSpool && stalled {
		u.drop()
		return true
	}
	return false
}

// trim drops the leading pieces that are on the spool and sent. u.mu is
// held.
func (u *upload) trim() {
	for len(u.window) > 0 && u.window[0].onSpool && u.window[0].to() <= u.pos {
		u.drop()
	}
}

// drop drops the window's first piece. u.mu is held.
func (u *upload) drop() {
	if p := u.window[0]; p.lent == 0 {
		u.buffers.Put(&p.buf)
	} else {
		p.dropped = true
	}
	u.window[0] = nil
	u.window = u.window[1:]
}

// giveBack is the release of a chunk of p lent to the Put's transport.
func (u *upload) giveBack(p *piece) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p.lent--
	if p.lent == 0 && p.dropped {
		u.buffers.Put(&p.buf)
	}
}

func (u *upload) getBuffer() []byte {
	if bp, ok := u.buffers.Get().(*[]byte); ok {
		return *bp
	}
	return make([]byte, windowBuffer)
}

// writeBehind writes the window's full pieces to the spool, oldest
// first, and once closing, the last partial one; then it returns.
func (u *upload) writeBehind() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for {
		var next *piece
		for _, p := range u.window {
			if !p.onSpool && !p.writing && (p.full() || u.closing) {
				next = p
				break
			}
		}
		if next == nil {
			if u.closing {
				return
			}
			u.cond.Wait()
			continue
		}
		next.writing = true
		b, off := next.buf[next.start:next.end], next.from()
		u.mu.Unlock()
		err := u.writeSpool(b, off)
		u.mu.Lock()
		next.writing, next.onSpool = false, true
		if err != nil && u.werr == nil {
			u.werr = fmt.Errorf("write spool %s: %w", u.spool.Name(), err)
		}
		u.trim()
		u.cond.Broadcast()
	}
}

// writeSpool writes b, the file's bytes at off, to the spool.
func (u *upload) writeSpool(b []byte, off int64) error {
	_, err := u.spool.WriteAt(b, off)
	return err
}

// Read is what Put reads: the file, as far as it is written.
func (u *upload) Read(p []byte) (int, error) {
	u.mu.Lock()
	for u.pos >= u.avail && !u.sealed && !u.aborted {
		u.cond.Wait()
	}
	if u.aborted {
		u.mu.Unlock()
		return 0, errUploadAborted
	}
	if u.pos >= u.avail {
		u.mu.Unlock()
		return 0, io.EOF
	}
	pos := u.pos
	n := min(int64(len(p)), u.avail-pos)
	u.mu.Unlock()
	k, err := u.readAt(p[:n], pos)
	u.mu.Lock()
	u.pos += int64(k)
	u.trim()
	u.cond.Broadcast()
	u.mu.Unlock()
	return k, err
}

// NextChunk is what Put reads instead (router.ChunkReader): the file's
// next bytes, at most max, lent from the window without a copy. Like a
// Put reading into a buffer of max bytes, it waits for max bytes, or as
// many as are left of the piece's buffer, unless the upload is sealed.
// Bytes below the window are read from the spool into a buffer of their
// own.
func (u *upload) NextChunk(max int) ([]byte, func(), error) {
	if b, release, err := u.lend(max); b != nil || err != nil {
		return b, release, err
	}
	buf := u.getBuffer()
	k, err := u.Read(buf[:min(max, len(buf))])
	return buf[:k], func() { u.buffers.Put(&buf) }, err
}

// An upload lends Put its window; were NextChunk to drift from the
// interface, Put would copy every byte again without a word.
var _ router.ChunkReader = (*upload)(nil)

// lend returns the file's next bytes from the window, or nothing when
// they are below the window.
func (u *upload) lend(max int) ([]byte, func(), error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for {
		// The end of the windowBuffer-aligned range of the next byte:
		// a chunk does not cross a piece.
		pieceEnd := u.pos&^(windowBuffer-1) + windowBuffer
		if u.avail >= min(u.pos+int64(max), pieceEnd) || u.sealed || u.aborted {
			break
		}
		u.cond.Wait()
	}
	if u.aborted {
		return nil, nil, errUploadAborted
	}
	if u.pos >= u.avail {
		return nil, nil, io.EOF
	}
	for _, p := range u.window {
		if u.pos >= p.from() && u.pos < p.to() {
			at := int(u.pos - p.base)
			b := p.buf[at:min(at+max, p.end)]
			p.lent++
			u.pos += int64(len(b))
			u.trim()
			u.cond.Broadcast()
			return b, func() { u.giveBack(p) }, nil
		}
	}
	return nil, nil, nil
}

// readAt reads the file's bytes at off, which are below the append end:
// from the window where it has them, from the spool below it.
func (u *upload) readAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		k, below, err := u.readWindow(p[n:], off)
		if err != nil {
			return n, err
		}
		if k == 0 {
			// Below the window: on the spool, and staying there.
			k, err = u.spool.ReadAt(p[n:n+below], off)
			if err != nil && !(errors.Is(err, io.EOF) && k == below) {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n + k, fmt.Errorf("read spool %s: %w", u.spool.Name(), err)
			}
		}
		n += k
		off += int64(k)
	}
	return n, nil
}

// readWindow copies the file's bytes at off from the window into p, and
// returns how many; when off is below the window it copies none and
// returns how many of p's bytes are below it.
func (u *upload) readWindow(p []byte, off int64) (int, int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.window) == 0 || off < u.window[0].from() {
		below := len(p)
		if len(u.window) > 0 {
			below = int(min(int64(below), u.window[0].from()-off))
		}
		return 0, below, nil
	}
	for _, pc := range u.window {
		if off >= pc.from() && off < pc.to() {
			return copy(p, pc.buf[off-pc.base:pc.end]), 0, nil
		}
	}
	return 0, 0, fmt.Errorf("read at %d: past the %d bytes written: %w", off, u.avail, io.ErrUnexpectedEOF)
}

// finish seals the upload at size and waits for its Put, at most timeout,
// then for the window to reach the spool, and returns Put's result (see
// spoolErr for the spool's).
func (u *upload) finish(size int64, timeout time.Duration) (router.Entry, error) {
	u.mu.Lock()
	if size != u.avail {
		u.aborted = true // cannot happen: only appends grow a streamed file
	}
	u.sealed = true
	u.cond.Broadcast()
	u.mu.Unlock()
	stop := time.AfterFunc(timeout, u.cancel)
	defer stop.Stop()
	<-u.done
	u.cancel()
	u.close()
	return u.entry, u.err
}

// abort fails the upload, and waits for its Put to return and for the
// window to reach the spool.
func (u *upload) abort() {
	u.mu.Lock()
	u.aborted = true
	u.cond.Broadcast()
	u.mu.Unlock()
	u.cancel()
	<-u.done
	u.close()
}

// close has the writer write what the window still holds and stop, and
// gives the window's buffers back.
func (u *upload) close() {
	u.mu.Lock()
	u.closing = true
	u.cond.Broadcast()
	u.mu.Unlock()
	u.written.Wait()
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.window) > 0 {
		u.drop()
	}
}

// spoolErr is the first write of the window that the spool lost; once the
// upload is finished or aborted, nil means the spool holds the file.
func (u *upload) spoolErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.werr
}
