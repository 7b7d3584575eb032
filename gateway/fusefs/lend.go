package fusefs

import (
	"cmp"
	"context"
	"errors"
	"syscall"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/router"
	"github.com/lakemesh/lakemesh/ufs"
)

// Writes into a lent journal file (router.LentSpool, cachenode/lend.go).
// When the node that takes a path's writes is on the mount's host and
// journals them (write_mode: back, or a lake homed in another region), a
// handle's spool is a journal data file the node lends it: the handle
// writes the file's bytes straight into the journal, and close or fsync
// commits it there, with no bytes sent. The spool's rules stay: writes in
// any order, reads of what was written, truncates. After a commit the
// file is the journal's, so the next change first copies it into a new
// spool. A commit the node refuses (it restarted and removed the file, or
// the file was renamed since) falls back to a Put of the bytes, which the
// handle still reads through its descriptor. A 2 GiB write-back
// checkpoint spent most of the machine's CPU copying its bytes four times
// on the way (spool, socket, journal): see the README's figures.

// spoolLender is a namespace that lends journal files (*router.Client).
type spoolLender interface {
	LendSpool(ctx context.Context, p string, attrs ufs.Attrs) (*router.LentSpool, error)
}

var _ spoolLender = (*router.Client)(nil)

// openSpool gives the handle an empty spool: a lent journal file when the
// path's node lends one, else a file in the mount's spool directory.
func (w *writeHandle) openSpool() syscall.Errno {
	fsys := w.n.fsys
	p, _ := w.n.path()
	if l, ok := fsys.ns.(spoolLender); ok && p != "" {
		ctx, cancel := fsys.opContext()
		lent, err := l.LendSpool(ctx, p, nil)
		cancel()
		if err == nil {
			w.lent, w.spool, w.lentGone = lent, lent.File(), false
			return 0
		}
		if !errors.Is(err, cachenode.ErrNotLendable) {
			fsys.log.Debug("no lent journal file; spooling the write", "path", p, "err", err)
		}
	}
	sp, err := fsys.newSpool()
	if err != nil {
		return fsys.errno(nil, "spool", p, err)
	}
	w.spool = sp
	return 0
}

// reopen, after a commit made the lent file the journal's, gives the
// handle a spool of its own holding the committed content, for a change
// that makes a new file.
func (w *writeHandle) reopen() syscall.Errno {
	if !w.committed {
		return 0
	}
	old := w.lent
	size := w.size.Load()
	w.lent, w.spool, w.committed = nil, nil, false
	defer old.Close()
	if errno := w.openSpool(); errno != 0 {
		return errno
	}
	if rerr, werr := w.copySpool(size, old.File().ReadAt); rerr != nil || werr != nil {
		return spoolErrno(cmp.Or(werr, rerr))
	}
	return 0
}

// writeAt writes the content's bytes at off into the spool, through the
// lent file's own writer when it is one (which keeps its checksum).
func (w *writeHandle) writeAt(b []byte, off int64) (int, error) {
	if w.lent != nil {
		return w.lent.WriteAt(b, off)
	}
	return w.spool.WriteAt(b, off)
}
