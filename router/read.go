package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/federation"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

// readStreamDesc describes the node's Read stream for calls made without
// the generated stub (raw page bytes need their own message types).
var readStreamDesc = &grpc.StreamDesc{StreamName: "Read", ServerStreams: true}

// parallelPages bounds how many pages one ReadAt fetches at once.
const parallelPages = 4

// reorderSlack is how far from a sequential run's frontier a read may
// start and still continue the run (ReadAt).
const reorderSlack = 8 << 20

// File is one version of a file, open for reading. Every read of a File
// returns bytes of the version it was opened at, or fails with an error
// wrapping ufs.ErrVersionChanged; it never mixes versions.
type File struct {
	c         *Client
	entry     Entry
	mount     federation.Mount
	ref       cachenode.FileRef
	id        cachenode.FileID
	readahead int64
	limit     atomic.Int64 // readahead stops here (Limit); the size by default

	mu       sync.Mutex // guards lastEnd, frontier, inRun, ahead, crossings
	lastEnd  int64      // end of the previous read: sequential detection
	frontier int64      // the furthest end of the current sequential run
	inRun    bool       // the previous read was sequential
	ahead    int64      // pages below this index have been prefetched
	// crossings: by page, the reports of fills over a line that a node
	// made for a short-circuit read of this File which then read the
	// bytes otherwise; the read that gets them reports it (withCrossing).
	crossings map[int64]*nodepb.PageFetch
	kept      atomic.Int32 // len(crossings), read without mu

	// page holds the last whole page a sequential reader fetched, so a
	// stream of small reads (8 KiB from io.Copy, 128 KiB from a kernel)
	// costs one node round trip per page, not one per read. At most one
	// page per open File; dropped by Close.
	pageMu  sync.Mutex // guards pageBuf, pageAt; held while a page is fetched
	pageBuf []byte
	pageAt  int64 // file offset of pageBuf[0]; -1 when empty
}

// Open stats p and opens that version of the file.
func (c *Client) Open(ctx context.Context, p string) (*File, error) {
	e, err := c.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if e.IsDir {
		return nil, fmt.Errorf("open %s: %w", e.Path, ufs.ErrIsDir)
	}
	return c.OpenEntry(e)
}

// OpenEntry opens the version of a file that e describes (from Stat or
// List) without asking again.
func (c *Client) OpenEntry(e Entry) (*File, error) {
	m, rel, ok := c.cfg.Topology.Resolve(e.Path)
	if !ok {
		return nil, fmt.Errorf("open %s: %w", e.Path, cachenode.ErrNoMount)
	}
	ref := cachenode.FileRef{Mount: m.Path, Path: rel, Version: e.Version, Size: e.Size}
	ra := c.cfg.Readahead
	if ra == 0 {
		ra = c.policies.For(e.Path).Readahead
	}
	f := &File{c: c, entry: e, mount: m, ref: ref, id: ref.ID(), readahead: ra, pageAt: -1}
	f.limit.Store(e.Size)
	return f, nil
}

// Limit says no read of f will go past end, so readahead never fetches
// a page beyond the one holding byte end-1. A ranged S3 GET sets it to
// the range's end: it costs the pages it covers and no more.
func (f *File) Limit(end int64) {
	f.limit.Store(min(max(end, 0), f.entry.Size))
}

// Close drops the file's buffered page. Reads after Close still work.
func (f *File) Close() error {
	f.pageMu.Lock()
	if f.pageBuf != nil {
		f.c.releasePageBuffer(f.pageBuf)
	}
	f.pageBuf, f.pageAt = nil, -1
	f.pageMu.Unlock()
	return nil
}

// readPiecesAt reads [off, off+len(p)) page piece by page piece, without
// the file's page buffer.
func (f *File) readPiecesAt(ctx context.Context, p []byte, off int64) error {
	ps := f.c.cfg.PageSize
	for len(p) > 0 {
		page := off / ps
		k := min(int64(len(p)), (page+1)*ps-off)
		if err := f.readPiece(ctx, page, off, p[:k], true); err != nil {
			return err
		}
		p, off = p[k:], off+k
	}
	return nil
}

// Entry is what the file was opened as.
func (f *File) Entry() Entry { return f.entry }

// PageSize is the region's page size. A reader that reads whole pages at
// page-aligned offsets gets each page from its node straight into its
// buffer, through no page buffer of the File.
func (f *File) PageSize() int64 { return f.c.cfg.PageSize }

// Size is the size of the opened version.
func (f *File) Size() int64 { return f.entry.Size }

// ReadAt reads len(p) bytes at off, with io.ReaderAt semantics (io.EOF
// when it stops at the end of the file). Pages are read from their owner
// nodes, several at once; a sequential pattern starts readahead.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset", f.entry.Path)
	}
	if off >= f.entry.Size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), f.entry.Size)

	sequential := f.sequential(off, end)

	ctx, span := f.c.tracer.Start(ctx, "lakemesh.read", trace.WithAttributes(
		attribute.String("lakemesh.path", f.entry.Path),
		attribute.String("lakemesh.version", f.entry.Version),
		attribute.Int64("lakemesh.offset", off),
		attribute.Int64("lakemesh.length", end-off),
		attribute.Bool("lakemesh.sequential", sequential),
		attribute.String("lakemesh.region", f.c.cfg.Region),
	))
	defer span.End()

	if sequential {
		// Before this read's own pages: the pages after it fill on their
		// owners while this read waits for its pages.
		f.readAhead(end)
	}
	ps := f.c.cfg.PageSize
	if sequential && end-off < ps && end-off >= directReadMin && off/ps == (end-1)/ps &&
		f.readShortCircuited(ctx, f.pageMembers(off/ps), off/ps, off, p[:end-off], true) {
		// The page's owner is on this host: the blocks go from its
		// memory or page file (filled first when it held none of them)
		// straight into p, with no copy through the file's page buffer
		// and without waiting for the file's other reads (a FUSE mount's
		// kernel sends a sequential reader's readahead as several
		// concurrent 1 MiB reads).
		n := int(end - off)
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	if sequential && end-off < ps {
		err := f.readBuffered(ctx, p[:end-off], off)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			return 0, err
		}
		n := int(end - off)
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelPages)
	for pos := off; pos < end; {
		page := pos / ps
		pieceEnd := min((page+1)*ps, end)
		buf := p[pos-off : pieceEnd-off]
		at := pos
		g.Go(func() error { return f.readPiece(gctx, page, at, buf, sequential) })
		pos = pieceEnd
	}
	err := g.Wait()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return 0, err
	}
	n := int(end - off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// directReadMin is the smallest sequential read that a short-circuited
// page serves straight into the caller's buffer; smaller ones (io.Copy's
// 32 KiB) are served from the file's page buffer, filled with one read
// per page, where a pread each would cost more than the copy it saves.
const directReadMin = cachenode.CheckRun

// sequential records a read of [off, end) and says whether it continues a
// sequential run: it starts where the last read ended or, while a run goes
// on, near the run's frontier. A FUSE mount's kernel sends its readahead
// requests concurrently, so they arrive slightly out of order (1 MiB
// requests swapped in pairs); a random reader's two consecutive reads are
// almost never both near, so it does not start readahead by chance.
func (f *File) sequential(off, end int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := off == f.lastEnd ||
		f.inRun && off >= f.frontier-reorderSlack && off <= f.frontier+reorderSlack
	if seq {
		f.frontier = max(f.frontier, end)
	} else {
		f.frontier = end
	}
	f.inRun = seq
	f.lastEnd = end
	return seq
}

// readBuffered serves a small sequential read from the file's buffered
// page, fetching the whole page(s) it touches first when needed. A read
// that takes the rest of a page it does not hold goes straight into p:
// a copy of that page would serve no later sequential read. So does a
// read that ends at the file's limit (Limit): no sequential read comes
// after it, and a ranged S3 GET fetches the bytes of its range, not the
// rest of its last page. So a small file read in one call (cat, a FUSE
// read, an S3 GET) needs no buffer.
func (f *File) readBuffered(ctx context.Context, p []byte, off int64) error {
	ps := f.c.cfg.PageSize
	last := off+int64(len(p)) >= f.limit.Load()
	f.pageMu.Lock()
	defer f.pageMu.Unlock()
	for len(p) > 0 {
		page := off / ps
		start := page * ps
		end := min(start+ps, f.entry.Size)
		k := min(int64(len(p)), end-off)
		if f.pageAt != start && off+k < end && !last {
			ok, err := f.bufferPage(ctx, page, start, end-start)
			if err != nil {
				return err
			}
			if !ok {
				// Every page buffer of the client is held by other open
				// files: read exactly what was asked, unbuffered.
				return f.readPiecesAt(ctx, p, off)
			}
		}
		if f.pageAt == start {
			copy(p[:k], f.pageBuf[off-start:])
		} else if err := f.readPiece(ctx, page, off, p[:k], true); err != nil {
			return err
		}
		p, off = p[k:], off+k
	}
	return nil
}

// bufferPage fetches page (n bytes from file offset start) whole into the
// file's page buffer, taking one of the client's page buffers first if the
// file holds none. It reports false when none is left. f.pageMu is held.
func (f *File) bufferPage(ctx context.Context, page, start, n int64) (bool, error) {
	switch {
	case f.pageBuf == nil:
		buf, ok := f.c.takePageBuffer(n)
		if !ok {
			return false, nil
		}
		f.pageBuf = buf
	case int64(cap(f.pageBuf)) < n:
		// The buffer is too short for this page; keep the token.
		f.pageBuf = f.c.pageBuffer(n)
	}
	f.pageBuf = f.pageBuf[:n]
	f.pageAt = -1
	if err := f.readPiece(ctx, page, start, f.pageBuf, true); err != nil {
		return true, err
	}
	f.pageAt = start
	return true, nil
}

// readShortCircuited fills buf with the bytes at off, all inside page,
// from the memory or the page file of members[0] (the page's owner) when
// it is on this host, each block verified as it is read; when that node
// holds none of the bytes, it fills them first and the read comes from its
// memory. The read is traced as a page fetch from where the bytes came,
// marked lakemesh.short_circuit. It reports false, having read nothing the
// caller may use, otherwise.
func (f *File) readShortCircuited(ctx context.Context, members []region.Member, page, off int64, buf []byte, sequential bool) bool {
	start := time.Now()
	if len(members) == 0 {
		return false
	}
	fetch, ok := f.c.sc.read(ctx, f, members[0], page, off, buf, sequential)
	if !ok {
		f.keepCrossing(page, fetch)
		return false
	}
	fetch = f.withCrossing(page, fetch)
	_, span := f.c.tracer.Start(ctx, "page.fetch", trace.WithTimestamp(start), trace.WithAttributes(
		attribute.Int64("lakemesh.page", page),
		attribute.Int64("lakemesh.offset", off),
		attribute.Int64("lakemesh.bytes", int64(len(buf))),
		attribute.String("lakemesh.source", fetch.GetTier()),
		attribute.Bool("lakemesh.short_circuit", true),
		attribute.String("lakemesh.node", members[0].ID),
		attribute.String("lakemesh.node_addr", members[0].Addr),
		attribute.Int64("lakemesh.duration_us", time.Since(start).Microseconds()),
	))
	setOrigin(span, fetch)
	span.End()
	return true
}

// keepCrossing keeps pf, the report of a fill a node made for a read of
// page that then failed to read the bytes that way, when the fill crossed
// a line: the read that gets the bytes reports it (withCrossing).
func (f *File) keepCrossing(page int64, pf *nodepb.PageFetch) {
	if pf.GetRegion() == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crossings == nil {
		f.crossings = map[int64]*nodepb.PageFetch{}
	}
	if _, ok := f.crossings[page]; !ok {
		f.kept.Add(1)
	}
	f.crossings[page] = pf
}

// withCrossing returns fetch, the report of a read of page, or, when it
// reports no crossing and one was kept for the page (keepCrossing), that
// one (taken) for the read's bytes.
func (f *File) withCrossing(page int64, fetch *nodepb.PageFetch) *nodepb.PageFetch {
	if f.kept.Load() == 0 || fetch.GetRegion() != "" {
		return fetch
	}
	f.mu.Lock()
	kept := f.crossings[page]
	if kept != nil {
		delete(f.crossings, page)
		f.kept.Add(-1)
	}
	f.mu.Unlock()
	if kept == nil {
		return fetch
	}
	kept.Bytes = fetch.GetBytes()
	return kept
}

// setOrigin adds to a page fetch's span where a node's fill of the page
// came from, when it came over a line, and whether a readahead crossed it
// before this read asked.
func setOrigin(span trace.Span, fetch *nodepb.PageFetch) {
	if fetch.GetRegion() == "" {
		return
	}
	span.SetAttributes(
		attribute.String("lakemesh.from_region", fetch.GetRegion()),
		attribute.String("lakemesh.from_node", fetch.GetSourceNode()),
		attribute.StringSlice("lakemesh.lines", fetch.GetLines()),
		attribute.Int64("lakemesh.crossed_bytes", fetch.GetCrossed()),
		attribute.Int64("lakemesh.budget_wait_us", fetch.GetWaitNanos()/1000),
		attribute.Float64("lakemesh.cost", fetch.GetCost()),
		attribute.Bool("lakemesh.read_ahead", fetch.GetAhead()),
	)
}

// readPiece fills buf with the bytes at off, all inside one page, from the
// page's owner, failing over to the next candidates, and finally to the
// lake itself when that is allowed.
func (f *File) readPiece(ctx context.Context, page, off int64, buf []byte, sequential bool) error {
	members := f.pageMembers(page)
	if holder, ok := cachenode.JournalNode(f.entry.Version); ok && !slices.ContainsFunc(members, func(m region.Member) bool { return m.ID == holder }) {
		// Only the journal has this version until its lake does; no
		// other node can serve it, and the lake's is an older one.
		return fmt.Errorf("read %s: this version is in the write-back journal of node %s until its lake has it, and %s is not up in region %s; it can be read once that node is back: %w",
			f.entry.Path, holder, holder, f.c.cfg.Region, ErrNoNode)
	}
	if f.readShortCircuited(ctx, members, page, off, buf, sequential) {
		return nil
	}
	start := time.Now()
	ctx, span := f.c.tracer.Start(ctx, "page.fetch", trace.WithAttributes(
		attribute.Int64("lakemesh.page", page),
		attribute.Int64("lakemesh.offset", off),
		attribute.Int64("lakemesh.bytes", int64(len(buf))),
	))
	defer span.End()

	got := 0 // bytes already in buf: a failover resumes after them
	var served region.Member
	var fetch *nodepb.PageFetch
	err := f.c.onMembers(ctx, members, func(_ nodepb.NodeClient, m region.Member) error {
		served = m
		cc, err := f.c.conn(m.Addr)
		if err != nil {
			return err
		}
		stream, err := cc.NewStream(ctx, readStreamDesc, nodepb.Node_Read_FullMethodName, grpc.CallContentSubtype(cachenode.RawCodecName))
		if err != nil {
			return err
		}
		req := &nodepb.ReadRequest{
			File:       &nodepb.FileRef{Path: f.entry.Path, Version: f.entry.Version, Size: f.entry.Size},
			Offset:     off + int64(got),
			Length:     int64(len(buf) - got),
			Sequential: sequential,
			Class:      f.c.cfg.Class,
			Raw:        true,
		}
		if err := stream.SendMsg(req); err != nil {
			return err
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		// Page bytes go from the transport's buffers straight into buf.
		sink := &cachenode.RawSink{Dst: buf, N: got}
		for {
			err := stream.RecvMsg(sink)
			got = sink.N
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		if sink.Meta != nil {
			for _, pf := range sink.Meta.GetFetches() {
				fetch = pf
			}
		}
		if got < len(buf) {
			return fmt.Errorf("read %s page %d from %s: short read, %d of %d bytes", f.entry.Path, page, m.Addr, got, len(buf))
		}
		return nil
	})
	tier := ""
	if err != nil && f.c.fallback(err) {
		f.c.log.Warn("no node could serve, reading the lake directly", "path", f.entry.Path, "page", page, "err", err)
		err = f.c.directRead(ctx, f, off+int64(got), buf[got:])
		tier, served = "direct", region.Member{}
	} else if fetch != nil {
		fetch = f.withCrossing(page, fetch)
		tier = fetch.GetTier()
	}
	setOrigin(span, fetch)
	span.SetAttributes(
		attribute.String("lakemesh.source", tier),
		attribute.String("lakemesh.node", served.ID),
		attribute.String("lakemesh.node_addr", served.Addr),
		attribute.Int64("lakemesh.duration_us", time.Since(start).Microseconds()),
	)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if errors.Is(err, ufs.ErrVersionChanged) {
			return fmt.Errorf("read %s: %w; open it again to read the new version", f.entry.Path, ufs.ErrVersionChanged)
		}
		return fmt.Errorf("read %s page %d: %w", f.entry.Path, page, err)
	}
	return nil
}

// pageMembers returns the members to read page from, in the order to try
// them.
func (f *File) pageMembers(page int64) []region.Member {
	members := f.c.candidates(cachenode.PageID{File: f.id, Index: page}.Key())
	if holder, ok := cachenode.JournalNode(f.entry.Version); ok {
		// A file still in a node's write-back journal: that node has it.
		members = preferring(members, holder)
	}
	return members
}

// readAhead asks the owners of the pages after end to fill them, so a
// sequential reader finds them cached. It never blocks the reader: when
// too many prefetch calls are in flight, it skips.
func (f *File) readAhead(end int64) {
	if f.readahead <= 0 {
		return
	}
	if _, ok := cachenode.JournalNode(f.entry.Version); ok {
		return // only the journal's node has it: no owner to prefetch at
	}
	ps := f.c.cfg.PageSize
	first := (end + ps - 1) / ps
	limitPage := (f.limit.Load() - 1) / ps
	last := (min(end+f.readahead, f.limit.Load()) - 1) / ps
	// Whole extents: their owner fills an extent's pages with one lake
	// read when it is asked for them together.
	last = min(last/cachenode.ExtentPages*cachenode.ExtentPages+cachenode.ExtentPages-1, limitPage)
	f.mu.Lock()
	first = max(first, f.ahead)
	if first > last {
		f.mu.Unlock()
		return
	}
	f.ahead = last + 1
	f.mu.Unlock()

	byOwner := map[string][]int64{}
	members := f.c.cfg.Members.Members()
	for page := first; page <= last; page++ {
		owner, ok := region.Owner(cachenode.PageID{File: f.id, Index: page}.Key(), members)
		if ok {
			byOwner[owner.Addr] = append(byOwner[owner.Addr], page)
		}
	}
	ref := &nodepb.FileRef{Path: f.entry.Path, Version: f.entry.Version, Size: f.entry.Size}
	for addr, pages := range byOwner {
		select {
		case f.c.bgSem <- struct{}{}:
		default:
			return
		}
		f.c.bg.Add(1)
		go func() {
			defer func() { <-f.c.bgSem; f.c.bg.Done() }()
			nc, err := f.c.node(addr)
			if err != nil {
				return
			}
			ctx, cancel := context.WithTimeout(f.c.ctx, 5*time.Second)
			defer cancel()
			reply, err := nc.Prefetch(ctx, &nodepb.PrefetchRequest{File: ref, Pages: pages})
			if err != nil {
				f.c.log.Debug("readahead failed", "node", addr, "err", err)
				f.retryAhead(pages[0])
				return
			}
			if k := int(reply.GetAccepted()); k < len(pages) {
				f.retryAhead(pages[k]) // the node was busy: ask again on a later read
			}
		}()
	}
}

// retryAhead makes a later readAhead ask again for the pages from page on.
func (f *File) retryAhead(page int64) {
	f.mu.Lock()
	f.ahead = min(f.ahead, page)
	f.mu.Unlock()
}

// Reader returns a sequential reader of the whole file.
func (f *File) Reader(ctx context.Context) io.Reader {
	return &fileReader{ctx: ctx, f: f}
}

type fileReader struct {
	ctx context.Context
	f   *File
	pos int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	n, err := r.f.ReadAt(r.ctx, p, r.pos)
	r.pos += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
