package fusefs

import (
	"context"
	"errors"
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

// errUploadAborted ends a streaming upload that can no longer be the
// file's content (a write or truncate touched what it may have sent).
var errUploadAborted = errors.New("streaming upload aborted: the file was changed out of order")

// upload is a Put that follows a spool while appends go on. Its reader
// hands Put the spool's bytes up to the append end, waits for more until
// the upload is sealed (flush) and then ends at the sealed size. An
// aborted upload fails its Put, which leaves the lake's old content.
type upload struct {
	spool  *os.File
	cancel context.CancelFunc
	done   chan struct{} // closed when Put returned

	mu      sync.Mutex // guards the fields below
	more    *sync.Cond // signalled when avail grows or the upload ends
	avail   int64      // spool bytes that may be sent
	pos     int64      // spool bytes sent
	sealed  bool       // no bytes past avail will come
	aborted bool

	entry router.Entry // Put's result, once done
	err   error
}

// startUpload starts a Put of p that follows spool from its start, with
// avail bytes ready.
func (f *FS) startUpload(p string, spool *os.File, avail int64, release func()) *upload {
	ctx, cancel := context.WithCancel(f.ctx)
	u := &upload{spool: spool, cancel: cancel, done: make(chan struct{}), avail: avail}
	u.more = sync.NewCond(&u.mu)
	go func() {
		defer close(u.done)
		defer release()
		e, err := f.ns.Put(ctx, p, u)
		u.mu.Lock()
		u.entry, u.err = e, err
		u.aborted = u.aborted || err != nil
		u.more.Broadcast()
		u.mu.Unlock()
	}()
	return u
}

// Read is what Put reads: the spool, as far as it is written.
func (u *upload) Read(p []byte) (int, error) {
	u.mu.Lock()
	for u.pos >= u.avail && !u.sealed && !u.aborted {
		u.more.Wait()
	}
	if u.aborted {
		u.mu.Unlock()
		return 0, errUploadAborted
	}
	if u.pos >= u.avail {
		u.mu.Unlock()
		return 0, io.EOF
	}
	n := min(int64(len(p)), u.avail-u.pos)
	pos := u.pos
	u.mu.Unlock()
	k, err := u.spool.ReadAt(p[:n], pos)
	u.mu.Lock()
	u.pos += int64(k)
	u.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) {
		return k, err
	}
	return k, nil
}

// grow makes the spool's first avail bytes ready to send.
func (u *upload) grow(avail int64) {
	u.mu.Lock()
	u.avail = avail
	u.more.Broadcast()
	u.mu.Unlock()
}

// finish seals the upload at size and waits for its Put, at most timeout.
func (u *upload) finish(size int64, timeout time.Duration) (router.Entry, error) {
	u.mu.Lock()
	if size != u.avail {
		u.aborted = true // cannot happen: only appends grow a streamed file
	}
	u.sealed = true
	u.more.Broadcast()
	u.mu.Unlock()
	stop := time.AfterFunc(timeout, u.cancel)
	defer stop.Stop()
	<-u.done
	u.cancel()
	return u.entry, u.err
}

// abort fails the upload and waits for its Put to return.
func (u *upload) abort() {
	u.mu.Lock()
	u.aborted = true
	u.more.Broadcast()
	u.mu.Unlock()
	u.cancel()
	<-u.done
}
