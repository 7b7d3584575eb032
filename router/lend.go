package router

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"sync"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/ufs"
)

// Short-circuit writes (cachenode/lend.go): when the node a Put of a path
// would go to is on this client's host and journals the write (write-back,
// or a lake homed in another region), the client can have the node lend it
// the journal's data file and write the file's bytes into it itself. The
// FUSE mount does, for every file it writes there: its writes then cost
// one copy, into the journal's file, where a spool and a Put stream cost
// four (the spool, the socket both ways, the journal).

// LentSpool is a journal data file lent for one write of a path. Write
// the file's content into File, in any order, then Commit its size; or
// Close to give it up (the node removes it). After Commit the file is the
// journal's: it may still be read, never written.
type LentSpool struct {
	c    *Client
	p    string
	file *os.File

	mu   sync.Mutex
	conn *net.UnixConn // nil once committed or closed
	// sum is the CRC-32C of the file's first sumTo bytes while they were
	// written in order from the start (sumTo -1 once not), so the node
	// need not read the file to take it; wbFrom is where the file's
	// writeback was last started.
	sum    uint32
	sumTo  int64
	wbFrom int64
}

// lentWriteback is the piece of a lent file whose writeback WriteAt
// starts once it is written, as the node's journal does for the files it
// writes itself.
const lentWriteback = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LendSpool asks for a lent journal file for a new write of p with attrs.
// It fails with an error wrapping cachenode.ErrNotLendable when the write
// cannot be lent: the node it would go to is not on this host or does not
// journal it; the caller then writes with Put as before.
func (c *Client) LendSpool(ctx context.Context, p string, attrs ufs.Attrs) (*LentSpool, error) {
	p, err := CleanNamespacePath(p)
	if err != nil {
		return nil, err
	}
	sc := c.sc
	members := c.candidates(metaKey(p))
	if sc == nil || !cachenode.ShortCircuitSupported || len(members) == 0 {
		return nil, fmt.Errorf("lend %s: %w: no short-circuit", p, cachenode.ErrNotLendable)
	}
	m := members[0] // where a Put of p would go
	if m.Socket == "" || m.Host != sc.host {
		return nil, fmt.Errorf("lend %s: %w: its node %s is on another host", p, cachenode.ErrNotLendable, m.ID)
	}
	// Asked on a pooled connection: a refusal (most writes are not
	// journaled) leaves it for the next request; a lent file keeps it.
	socket := cachenode.ShortCircuitSocket(m.Socket)
	conn, err := sc.conn(socket)
	if err != nil {
		return nil, fmt.Errorf("lend %s: %w", p, err)
	}
	deadline := time.Now().Add(scTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	f, err := cachenode.LendJournalFile(conn, p, attrs, deadline)
	if err != nil {
		if errors.Is(err, cachenode.ErrNotLendable) {
			sc.putConn(socket, conn)
		} else {
			conn.Close()
		}
		return nil, fmt.Errorf("lend %s from node %s: %w", p, m.ID, err)
	}
	return &LentSpool{c: c, p: p, file: f, conn: conn}, nil
}

// WriteAt writes b at off into the lent file (io.WriterAt): in any order,
// before Commit (after it the file is the journal's: writing it then is
// the caller's error). WriteAt and Truncate are called one at a time.
func (l *LentSpool) WriteAt(b []byte, off int64) (int, error) {
	k, err := l.file.WriteAt(b, off)
	if k > 0 {
		l.mu.Lock()
		if off == l.sumTo {
			l.sum = crc32.Update(l.sum, castagnoli, b[:k])
			l.sumTo += int64(k)
		} else {
			l.sumTo = -1 // rewritten, or a hole left: the node takes the sum
		}
		from, to := l.wbFrom, (off+int64(k))&^(lentWriteback-1)
		if to > from {
			l.wbFrom = to
		}
		l.mu.Unlock()
		if to > from {
			cachenode.StartWriteback(l.file, from, to-from)
		}
	}
	return k, err
}

// Truncate sets the lent file's size.
func (l *LentSpool) Truncate(size int64) error {
	if err := l.file.Truncate(size); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case size == 0:
		l.sum, l.sumTo = 0, 0
	case size != l.sumTo:
		l.sumTo = -1
	}
	return nil
}

// Path is the namespace path the file was lent for.
func (l *LentSpool) Path() string { return l.p }

// File is the lent file, open for reading and writing; write it with
// WriteAt and Truncate.
func (l *LentSpool) File() *os.File { return l.file }

// Commit makes the lent file (which must be size bytes long) the path's
// new content, as a Put of its bytes would, and returns the entry. A
// failed commit leaves the bytes in File, to be written with Put instead;
// either way the file cannot be committed again.
func (l *LentSpool) Commit(ctx context.Context, size int64) (Entry, error) {
	l.mu.Lock()
	conn := l.conn
	l.conn = nil
	sum, sumKnown := l.sum, l.sumTo == size
	l.mu.Unlock()
	if conn == nil {
		return Entry{}, fmt.Errorf("commit %s: %w", l.p, errLentSpoolDone)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline() // zero: the sync takes what it takes
	pe, err := cachenode.CommitLentFile(conn, cachenode.LentCommit{Size: size, CRC32C: sum, CRCKnown: sumKnown}, deadline)
	if err != nil {
		return Entry{}, fmt.Errorf("commit %s: %w", l.p, err)
	}
	l.c.invalidateChanged(ctx, l.p)
	return entryFrom(pe), nil
}

// Close gives up a file not committed (the node removes it) and closes
// the descriptor.
func (l *LentSpool) Close() error {
	l.mu.Lock()
	conn := l.conn
	l.conn = nil
	l.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	return l.file.Close()
}

var errLentSpoolDone = fmt.Errorf("the lent file was committed or given up already")
