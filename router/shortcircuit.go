package router

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/region"
)

// Short-circuit local reads (see cachenode/shortcircuit.go): when the
// member that serves a page is on this client's host, the client asks the
// node's short-circuit socket (cachenode.ShortCircuitSocket of the
// member's Socket) for a read-only descriptor of the page's data file and
// the checksums of the blocks in it, and reads those blocks itself with
// pread, verifying each block's CRC-32C. Anything else (a block the grant
// does not list, a checksum that fails, a socket that cannot be dialled,
// another platform than Linux) reads over gRPC as before, silently.
const (
	// scMaxGrants bounds the pages (and so the descriptors) the client
	// keeps grants for; the least recently used is closed first.
	scMaxGrants = 256
	// scAskEvery is how often the client asks again for a page whose grant
	// is missing blocks a read needs, or that was not on disk: a gRPC read
	// may have filled it since, but asking on every read would cost more
	// than it saves.
	scAskEvery = time.Second
	// scGrantTTL is how long a grant is used before it is asked for again.
	// Asking touches the page on the node (its eviction order), and after
	// the node dropped the page the client lets go of the descriptor, so
	// the unlinked file's blocks are freed on disk.
	scGrantTTL = 10 * time.Second
	// scIdleConns bounds the idle connections kept per socket. Each is a
	// connection the node serves, and it serves a bounded number for all
	// its clients (cachenode.ShortCircuitConfig.MaxConns, 256). A filling
	// read holds its connection until the node's fill is done, so 16
	// readers of cold small files hold 16: with 4 kept, 12 were dialled
	// and closed again all the time, 3% of the mount's CPU there (and the
	// node's accepts), and the step cost 5% more CPU per file.
	scIdleConns = scMaxFills
	// scConnIdle: an idle connection older than this is closed, not used
	// (the node closes idle connections after a while).
	scConnIdle = 30 * time.Second
	// scTimeout bounds one ask.
	scTimeout = 2 * time.Second
	// scMaxFills bounds the filling memory reads (a cold page's fill, at
	// the node, through the short-circuit socket) a client waits for at
	// once; more ask for memory only and read a page nobody holds over
	// gRPC. A fill holds its connection, which a node serves a bounded
	// number of (cachenode.ShortCircuitConfig.MaxConns), for as long as a
	// cold page takes to come, over a line perhaps.
	scMaxFills = 16
	// scMemoryReadMin is the smallest read that asks for the node's
	// memory before a page file. Each memory read is a round trip to the
	// node, where a page file's grant, once held, serves reads with a
	// pread alone: a random 4 KiB read would cost several times more.
	scMemoryReadMin = 64 << 10
)

// errBlockCRC: a block read through a descriptor or out of a node's
// memory failed its checksum.
var errBlockCRC = cachenode.ErrShortCircuitChecksum

// shortCircuit is a client's short-circuit state. Its mutex is a leaf:
// no I/O under it.
type shortCircuit struct {
	host    string
	downFor time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	closed bool
	grants map[scKey]*list.Element // of *scGrant
	lru    *list.List              // front: most recently used
	idle   map[string][]scConn     // socket -> idle connections
	down   map[string]time.Time    // socket -> not dialled again until
	noMem  map[string]bool         // socket -> its node's memory cannot be read from here
	noStat map[string]bool         // socket -> its node does not answer stats there
	noFill map[string]bool         // socket -> its node does not fill for memory reads (an older node)
	maps   *pageMaps               // page files mapped for sections (zerocopy.go); own lock
	fills  chan struct{}           // filling memory reads waited for (scMaxFills)

	reads     atomic.Int64 // page pieces served by short-circuit
	memReads  atomic.Int64 // of those, copied from the node's memory tier
	fillReads atomic.Int64 // of those, filled by the node for the read (cold pages)
	sections  atomic.Int64 // verified sections handed out (zerocopy.go)
	asks      atomic.Int64 // grants asked for
	dials     atomic.Int64 // connections dialled
	corrupt   atomic.Int64 // blocks that failed their checksum
	fallbacks atomic.Int64 // reads that wanted a grant and went over gRPC
	stats     atomic.Int64 // stats the socket answered
}

// scKey names a grant: one page of one file version on one node. The
// FileID digests mount, path and version, so a grant never serves another
// version.
type scKey struct {
	node string
	file cachenode.FileID
	page int64
}

// scGrant is what the client holds for one page. Fields are guarded by
// shortCircuit.mu; the file is read without it.
type scGrant struct {
	key     scKey
	file    *os.File // nil: not granted (not on disk, dropped, failed)
	page    cachenode.DiskPage
	askedAt time.Time
	asking  chan struct{} // non-nil while an ask is in flight; closed when it ends
	gone    bool          // evicted from the LRU or the client closed
}

type scConn struct {
	c    *net.UnixConn
	used time.Time
}

func newShortCircuit(host string, downFor time.Duration, log *slog.Logger) *shortCircuit {
	return &shortCircuit{
		host: host, downFor: downFor, log: log,
		grants: map[scKey]*list.Element{}, lru: list.New(),
		idle: map[string][]scConn{}, down: map[string]time.Time{}, noMem: map[string]bool{}, noStat: map[string]bool{}, noFill: map[string]bool{},
		maps: newPageMaps(), fills: make(chan struct{}, scMaxFills),
	}
}

// remember records a fact about socket's node in set (noMem, noStat,
// noFill) and reports whether it is news.
func (sc *shortCircuit) remember(set map[string]bool, socket string) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	news := !set[socket]
	set[socket] = true
	return news
}

// read fills buf with the bytes at file offset off of page, all inside
// the page, from member m's memory or through a short-circuit grant of its
// page file, and reports where the bytes came from: memory; wait (memory,
// once the node's fill in flight was done); disk; or, when the node held
// none of them and filled them for this read, the fill's own report. It
// reports false, having read nothing the caller may use, when the page
// must be read over gRPC instead.
func (sc *shortCircuit) read(ctx context.Context, f *File, m region.Member, page, off int64, buf []byte, sequential bool) (*nodepb.PageFetch, bool) {
	if sc == nil || !cachenode.ShortCircuitSupported || m.Socket == "" || m.Host != sc.host {
		return nil, false
	}
	ps := f.c.cfg.PageSize
	pageLen := min(ps, f.entry.Size-page*ps)
	pageOff := off - page*ps
	end := pageOff + int64(len(buf))
	key := scKey{node: m.Addr, file: f.id, page: page}
	small := len(buf) < scMemoryReadMin
	// filled is the report of a fill the node made for this read whose
	// bytes are then read otherwise (a memory tier that did not keep
	// them): what this read reports, or hands back when it fails.
	var filled *nodepb.PageFetch
	if !small {
		pf, ok := sc.readMemory(ctx, f, m, key, page, pageLen, pageOff, buf, sequential)
		if ok {
			return pf, true
		}
		filled = pf
		if ctx.Err() != nil {
			return filled, false // given up: no grant to wait for
		}
	}
	file, dp, ok := sc.grant(ctx, key, f, m, page, pageLen, pageOff, end)
	if !ok {
		if small {
			pf, ok := sc.readMemory(ctx, f, m, key, page, pageLen, pageOff, buf, sequential)
			if ok {
				return pf, true
			}
			filled = pf
		}
		sc.fallbacks.Add(1)
		return filled, false
	}
	err := readGranted(file, dp, pageOff, buf)
	if err != nil {
		if errors.Is(err, errBlockCRC) {
			sc.corrupt.Add(1)
		}
		sc.log.Debug("short-circuit read failed, reading over gRPC", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
		sc.drop(key, file)
		sc.fallbacks.Add(1)
		return filled, false
	}
	sc.reads.Add(1)
	if filled != nil {
		filled.Bytes = int64(len(buf))
		return filled, true
	}
	return &nodepb.PageFetch{Page: page, Tier: string(cachenode.TierDisk), Bytes: int64(len(buf))}, true
}

// readMemory reads page bytes [off, off+len(buf)) from member m's memory
// tier (cachenode.ReadShortCircuitMemory): a page a cold read's readahead
// has just filled is there, and reading it back from the page file would
// read from disk what the node only just wrote. When the node holds none
// of the bytes, it fills them for this read (a cold page), unless
// scMaxFills such reads are waiting already. It does not ask when the
// client holds a grant of the page's file that covers the bytes (a pread
// through it needs no round trip to the node), nor after this process was
// refused reading m's memory. It reports where the bytes came from, or
// false, having read nothing the caller may use, when they must be read
// otherwise, with the report of the fill the node made for them if it
// made one.
func (sc *shortCircuit) readMemory(ctx context.Context, f *File, m region.Member, key scKey, page, pageLen, off int64, buf []byte, sequential bool) (*nodepb.PageFetch, bool) {
	socket := cachenode.ShortCircuitSocket(m.Socket)
	end := off + int64(len(buf))
	sc.mu.Lock()
	skip := sc.closed || sc.noMem[socket]
	noFill := sc.noFill[socket]
	if el, ok := sc.grants[key]; ok && !skip {
		g := el.Value.(*scGrant)
		skip = g.file != nil && covers(g.page, pageLen, off, end) && time.Since(g.askedAt) < scGrantTTL
	}
	sc.mu.Unlock()
	if skip {
		return nil, false
	}
	conn, err := sc.conn(socket)
	if err != nil {
		return nil, false
	}
	req := cachenode.ShortCircuitRequest{
		Path: f.entry.Path, Version: f.entry.Version, Size: f.entry.Size, PageSize: f.c.cfg.PageSize, Page: page,
		Off: off, End: end, Sequential: sequential, Class: f.c.cfg.Class,
	}
	deadline := time.Now().Add(scTimeout)
	if !noFill {
		select {
		case sc.fills <- struct{}{}:
			defer func() { <-sc.fills }()
			req.Fill = true
			deadline = time.Now().Add(cachenode.ShortCircuitFillTimeout + scTimeout)
		default:
		}
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	pf, err := cachenode.ReadShortCircuitMemory(ctx, conn, req, buf, deadline)
	switch {
	case err == nil:
		sc.putConn(socket, conn)
		sc.reads.Add(1)
		sc.memReads.Add(1)
		if req.Fill && pf.GetTier() != string(cachenode.TierMemory) && pf.GetTier() != string(cachenode.TierWait) {
			sc.fillReads.Add(1)
		}
		return pf, true
	case errors.Is(err, cachenode.ErrMissing):
		sc.putConn(socket, conn)
		if errors.Is(err, cachenode.ErrNotHeld) {
			// Not on disk either: no grant to ask for (a cold page; the
			// read over gRPC fills it).
			sc.notOnDisk(key)
		}
	case errors.Is(err, cachenode.ErrMemoryReadDenied):
		sc.putConn(socket, conn)
		if sc.remember(sc.noMem, socket) {
			sc.log.Info("this process may not read the node's memory (another user, or Yama's ptrace_scope); short-circuit reads use its page files", "node", m.Addr, "err", err)
		}
	case errors.Is(err, errBlockCRC):
		// The node's own read verifies the block too, and drops it.
		sc.putConn(socket, conn)
		sc.corrupt.Add(1)
		sc.log.Debug("short-circuit memory read failed its checksum, reading otherwise", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
	case req.Fill && errors.Is(err, cachenode.ErrShortCircuitUnknownRequest):
		// An older node, which does not fill for memory reads: asked
		// again, it would refuse every cold page the same way. Its
		// memory is still read (op 2); cold pages go over gRPC.
		sc.putConn(socket, conn)
		if sc.remember(sc.noFill, socket) {
			sc.log.Info("the node does not fill pages for short-circuit reads (an older version): cold pages are read over gRPC", "node", m.Addr, "err", err)
		}
	case errors.Is(err, cachenode.ErrShortCircuitRefused):
		// A fill that failed: the read over gRPC says why, or serves it.
		sc.putConn(socket, conn)
		sc.log.Debug("short-circuit memory read refused, reading over gRPC", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
	default:
		conn.Close()
		sc.log.Debug("short-circuit memory read failed, reading otherwise", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
	}
	return pf, false
}

// stat asks member m for its Stat of p (StatAttrs when withAttrs) on its
// short-circuit socket when m is on this host (a FUSE mount's lookups, an
// S3 gateway's GETs: gRPC's framing cost more than the node's answer).
// answered reports whether the node answered: the reply, or its error as
// its gRPC call would have returned it. Otherwise the caller asks over
// gRPC.
func (sc *shortCircuit) stat(ctx context.Context, m region.Member, p string, withAttrs bool) (reply *nodepb.StatAttrsReply, answered bool, err error) {
	if sc == nil || !cachenode.ShortCircuitSupported || m.Socket == "" || m.Host != sc.host {
		return nil, false, nil
	}
	socket := cachenode.ShortCircuitSocket(m.Socket)
	sc.mu.Lock()
	skip := sc.closed || sc.noStat[socket]
	sc.mu.Unlock()
	if skip {
		return nil, false, nil
	}
	conn, err := sc.conn(socket)
	if err != nil {
		return nil, false, nil
	}
	// Most stats are answered from the node's metadata cache. One that
	// asks the lake and takes longer than an ask may is asked again over
	// gRPC, which joins the node's lake call in flight; a socket that does
	// not answer (a node serving its most connections) costs no more.
	deadline := time.Now().Add(scTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	reply, answered, err = cachenode.StatShortCircuit(ctx, conn, p, withAttrs, deadline)
	switch {
	case answered:
		sc.putConn(socket, conn)
		sc.stats.Add(1)
		return reply, true, err
	case errors.Is(err, cachenode.ErrShortCircuitRefused):
		// A node that does not answer stats there: not asked again.
		sc.putConn(socket, conn)
		sc.remember(sc.noStat, socket)
		sc.log.Debug("short-circuit stat refused, stats go over gRPC", "node", m.Addr, "err", err)
	default:
		conn.Close()
		sc.log.Debug("short-circuit stat failed, asking over gRPC", "path", p, "node", m.Addr, "err", err)
	}
	return nil, false, nil
}

// covers says whether a grant of a page of pageLen bytes lists every
// block that bytes [off, end) of the page touch.
func covers(dp cachenode.DiskPage, pageLen, off, end int64) bool {
	if dp.Length != pageLen || dp.BlockSize <= 0 {
		return false
	}
	for b := off / dp.BlockSize; b*dp.BlockSize < end; b++ {
		if b >= int64(len(dp.Present)) || !dp.Present[b] {
			return false
		}
	}
	return true
}

// grant returns the descriptor and grant to read bytes [off, end) of a
// page with, asking the node when the client holds none that covers them
// and has not asked lately.
func (sc *shortCircuit) grant(ctx context.Context, key scKey, f *File, m region.Member, page, pageLen, off, end int64) (*os.File, cachenode.DiskPage, bool) {
	for {
		sc.mu.Lock()
		if sc.closed {
			sc.mu.Unlock()
			return nil, cachenode.DiskPage{}, false
		}
		var g *scGrant
		if el, ok := sc.grants[key]; ok {
			sc.lru.MoveToFront(el)
			g = el.Value.(*scGrant)
		}
		now := time.Now()
		if g != nil {
			usable := g.file != nil && covers(g.page, pageLen, off, end)
			if usable && (now.Sub(g.askedAt) < scGrantTTL || g.asking != nil) {
				file, dp := g.file, g.page
				sc.mu.Unlock()
				return file, dp, true
			}
			if wait := g.asking; wait != nil {
				// Another read is asking for this page: its answer is
				// this read's too.
				sc.mu.Unlock()
				select {
				case <-wait:
					continue
				case <-ctx.Done():
					return nil, cachenode.DiskPage{}, false
				}
			}
			if !usable && now.Sub(g.askedAt) < scAskEvery {
				sc.mu.Unlock()
				return nil, cachenode.DiskPage{}, false
			}
		}
		var evicted []*os.File
		if g == nil {
			g = &scGrant{key: key}
			sc.grants[key] = sc.lru.PushFront(g)
			evicted = sc.evictLocked()
		}
		done := make(chan struct{})
		g.asking = done
		sc.mu.Unlock()
		for _, f := range evicted {
			f.Close()
		}

		file, dp, err := sc.ask(ctx, m, cachenode.ShortCircuitRequest{
			Path: f.entry.Path, Version: f.entry.Version, Size: f.entry.Size, PageSize: f.c.cfg.PageSize, Page: page,
		})
		if err != nil && !errors.Is(err, cachenode.ErrMissing) {
			sc.log.Debug("short-circuit grant failed, reading over gRPC", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
		}
		if file != nil && dp.Length != pageLen {
			// Another geometry than the client's: never use it.
			file.Close()
			file = nil
		}

		sc.mu.Lock()
		old, gone := g.file, g.gone
		g.file, g.page, g.askedAt, g.asking = file, dp, time.Now(), nil
		if gone {
			g.file = nil
		}
		sc.mu.Unlock()
		close(done)
		if old != nil {
			// A read still using it fails and reads over gRPC.
			old.Close()
		}
		if gone && file != nil {
			file.Close()
			file = nil
		}
		if file == nil || !covers(dp, pageLen, off, end) {
			return nil, cachenode.DiskPage{}, false
		}
		return file, dp, true
	}
}

// notOnDisk records that key's page is not on its node's disk, as a
// grant asked for and refused just now would: grant does not ask for it
// again for scAskEvery.
func (sc *shortCircuit) notOnDisk(key scKey) {
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		return
	}
	var evicted []*os.File
	if el, ok := sc.grants[key]; ok {
		sc.lru.MoveToFront(el)
		if g := el.Value.(*scGrant); g.file == nil && g.asking == nil {
			g.askedAt = time.Now()
		}
	} else {
		sc.grants[key] = sc.lru.PushFront(&scGrant{key: key, askedAt: time.Now()})
		evicted = sc.evictLocked()
	}
	sc.mu.Unlock()
	for _, f := range evicted {
		f.Close()
	}
}

// evictLocked removes the least recently used grants past the bound and
// returns their files for the caller to close after unlocking.
func (sc *shortCircuit) evictLocked() []*os.File {
	var files []*os.File
	for sc.lru.Len() > scMaxGrants {
		el := sc.lru.Back()
		g := el.Value.(*scGrant)
		sc.lru.Remove(el)
		delete(sc.grants, g.key)
		g.gone = true
		if g.file != nil {
			files = append(files, g.file)
			g.file = nil
		}
	}
	return files
}

// drop lets go of a grant's descriptor after a read through it failed;
// the page is asked for again no sooner than scAskEvery.
func (sc *shortCircuit) drop(key scKey, file *os.File) {
	sc.mu.Lock()
	if el, ok := sc.grants[key]; ok {
		if g := el.Value.(*scGrant); g.file == file {
			g.file, g.askedAt = nil, time.Now()
		}
	}
	sc.mu.Unlock()
	file.Close()
}

// ask asks member m's short-circuit socket for a grant.
func (sc *shortCircuit) ask(ctx context.Context, m region.Member, req cachenode.ShortCircuitRequest) (*os.File, cachenode.DiskPage, error) {
	socket := cachenode.ShortCircuitSocket(m.Socket)
	conn, err := sc.conn(socket)
	if err != nil {
		return nil, cachenode.DiskPage{}, err
	}
	sc.asks.Add(1)
	deadline := time.Now().Add(scTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	file, dp, err := cachenode.OpenShortCircuit(conn, req, deadline)
	if err == nil || errors.Is(err, cachenode.ErrMissing) {
		sc.putConn(socket, conn)
	} else {
		conn.Close()
	}
	return file, dp, err
}

// conn returns an idle connection to socket or dials one.
func (sc *shortCircuit) conn(socket string) (*net.UnixConn, error) {
	sc.mu.Lock()
	if until, ok := sc.down[socket]; ok && time.Now().Before(until) {
		sc.mu.Unlock()
		return nil, fmt.Errorf("short-circuit socket %s failed lately", socket)
	}
	var stale []scConn
	var c *net.UnixConn
	for idle := sc.idle[socket]; len(idle) > 0 && c == nil; {
		last := idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		sc.idle[socket] = idle
		if time.Since(last.used) < scConnIdle {
			c = last.c
		} else {
			stale = append(stale, last)
		}
	}
	sc.mu.Unlock()
	for _, s := range stale {
		s.c.Close()
	}
	if c != nil {
		return c, nil
	}
	sc.dials.Add(1)
	nc, err := net.DialTimeout("unix", socket, scTimeout)
	if err != nil {
		sc.mu.Lock()
		sc.down[socket] = time.Now().Add(sc.downFor)
		sc.mu.Unlock()
		sc.log.Debug("short-circuit socket cannot be dialled, reading over gRPC", "socket", socket, "err", err)
		return nil, err
	}
	return nc.(*net.UnixConn), nil
}

func (sc *shortCircuit) putConn(socket string, c *net.UnixConn) {
	sc.mu.Lock()
	if !sc.closed && len(sc.idle[socket]) < scIdleConns {
		sc.idle[socket] = append(sc.idle[socket], scConn{c: c, used: time.Now()})
		c = nil
	}
	sc.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// close closes every descriptor and connection; reads after it use gRPC.
func (sc *shortCircuit) close() {
	sc.mu.Lock()
	sc.closed = true
	var files []*os.File
	for _, el := range sc.grants {
		g := el.Value.(*scGrant)
		g.gone = true
		if g.file != nil {
			files = append(files, g.file)
			g.file = nil
		}
	}
	sc.grants, sc.lru = map[scKey]*list.Element{}, list.New()
	idle := sc.idle
	sc.idle = map[string][]scConn{}
	sc.mu.Unlock()
	for _, f := range files {
		f.Close()
	}
	sc.maps.close()
	for _, cs := range idle {
		for _, c := range cs {
			c.c.Close()
		}
	}
}

// scScratch holds one block for reads that take part of a block.
var scScratch sync.Pool

// readGranted reads bytes [off, off+len(buf)) of a page from its data
// file, verifying every block it touches against the grant's checksum
// before any of its bytes are used. Blocks wholly inside the range are
// read straight into buf, cachenode.CheckRun bytes at a time (8 warm
// streams of 64 MiB files, bound by memory bandwidth: 2.6-4.1 GB/s
// checking whole 4 MiB runs after one pread, 3.0-5.8 GB/s in pieces); a
// block the range takes part of is read whole into a scratch buffer.
func readGranted(file *os.File, dp cachenode.DiskPage, off int64, buf []byte) error {
	bs := dp.BlockSize
	end := off + int64(len(buf))
	inside := func(b int64) bool {
		start := b * bs
		return start >= off && min(start+bs, dp.Length) <= end
	}
	for b := off / bs; b*bs < end; {
		start := b * bs
		if inside(b) {
			j := b + 1
			for j*bs < end && inside(j) {
				j++
			}
			step := max(1, cachenode.CheckRun/bs)
			for k := b; k < j; k += step {
				hi := min(k+step, j)
				dst := buf[k*bs-off : min(hi*bs, dp.Length)-off]
				if _, err := file.ReadAt(dst, dp.Base+k*bs); err != nil {
					return err // io.EOF: the file is shorter than the grant
				}
				for c := k; c < hi; c++ {
					lo := (c - k) * bs
					if cachenode.BlockCRC(dst[lo:min(lo+bs, int64(len(dst)))]) != dp.CRCs[c] {
						return fmt.Errorf("block %d: %w", c, errBlockCRC)
					}
				}
			}
			b = j
			continue
		}
		blen := min(bs, dp.Length-start)
		bp, _ := scScratch.Get().(*[]byte)
		if bp == nil || int64(cap(*bp)) < blen {
			s := make([]byte, bs)
			bp = &s
		}
		blk := (*bp)[:blen]
		_, err := file.ReadAt(blk, dp.Base+start)
		if err == nil && cachenode.BlockCRC(blk) != dp.CRCs[b] {
			err = fmt.Errorf("block %d: %w", b, errBlockCRC)
		}
		if err == nil {
			lo, hi := max(off, start), min(end, start+blen)
			copy(buf[lo-off:hi-off], blk[lo-start:hi-start])
		}
		scScratch.Put(bp)
		if err != nil {
			return err
		}
		b++
	}
	return nil
}
