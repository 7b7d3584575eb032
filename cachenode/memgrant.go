package cachenode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// Memory short-circuit reads. A page a client on the node's host reads is
// most often in the node's memory tier: just filled by a cold read's
// readahead, or warm. Through a page file that client would read it back
// from the disk the node only just wrote it to with direct I/O (a cold
// sequential read moved as many bytes off the disk as onto it), and over
// gRPC it costs both processes a copy through a socket and the HTTP/2
// framing. So the short-circuit socket also answers "read bytes [off, end)
// of this page from memory" (op 2) with where the memory tier's blocks lie
// in the node's address space and their checksums; the client copies them
// into its buffer itself with process_vm_readv(2), one copy, and verifies
// every block it copied.
//
// Why the addresses stay right: a memory block is never written once
// stored, and its buffer is reused for another page only when nothing in
// the node refers to it any more (pageBuffers). The connection that
// answered holds the blocks until the client says it is done (op 3, no
// answer) or asks again or goes away, so an eviction meanwhile frees
// nothing the client may still copy from. Copying from another process
// needs the rights to ptrace it (the same user, with Yama's ptrace_scope
// at most 0, or CAP_SYS_PTRACE); a client without them gets EPERM and
// reads page files as before.
//
// The wire format extends shortcircuit.go's:
//
//	request op 2: op 1's fields, then off int64, end int64 (page offsets)
//	request op 3: no fields, no response (release the blocks held)
//	request op 6: op 2's fields, then sequential uint16 (1: fill whole
//	  pages), class (uint32 length + bytes): op 2, filling what the node
//	  does not hold
//	response status 3 (in memory): page length int64, block size int64,
//	  first block uint32, blocks uint32, waited uint32 (1: the node waited
//	  for a fill in flight), then per block: address uint64, length
//	  uint32, CRC-32C uint32; to op 6, then the fill's report (a
//	  nodepb.PageFetch, uint32 length + protobuf; length 0 when the node
//	  fetched nothing)
//	response status 1: the memory tier does not hold every block asked for;
//	  to op 6, then the fill's report as for status 3 (the client reads
//	  the page file, and reports the fill)
//	response status 4: the node holds no block of the page at all
//
// A filling read (op 6) is a cold read's whole way on this host: without
// it the client asks for memory, is told "not held", and reads over gRPC,
// whose framing costs both processes more than the page's copy (a cold
// 100 KiB file through a FUSE mount spent a quarter of the node's CPU in
// gRPC). Its fill is the one a gRPC Read would start, with the same
// singleflight, fill context and report; only the bytes come back through
// memory. When the memory tier does not keep what the fill fetched (a tier
// too small), the answer is status 1 and the client reads the page file.
const (
	scOpMemory  = 2
	scOpRelease = 3
	scOpFill    = 6
	scInMemory  = 3
	scNotHeld   = 4
	// scMaxMemBlocks bounds the blocks of one memory answer.
	scMaxMemBlocks = 1 << 16
	// scAwaitFill bounds how long a memory read waits for a fill in
	// flight (clients give up on an answer after 2 s).
	scAwaitFill = time.Second
	// ShortCircuitFillTimeout bounds a filling memory read's fill (a
	// client waits this long and a little more for the answer, then reads
	// over gRPC, which joins the fill if it goes on).
	ShortCircuitFillTimeout = time.Minute
)

// ErrNotHeld comes with ErrMissing when the node holds no block of the
// page in either tier (Store.MemoryBlocks, and a memory short-circuit
// read's answer): asking for a descriptor of its page file would be
// refused too.
var ErrNotHeld = errors.New("the node holds no block of the page")

// MemoryBlock is one memory-tier block of a memory grant: where it lies in
// the node's address space, its length and its CRC-32C.
type MemoryBlock struct {
	Addr uintptr
	Len  int
	CRC  uint32
}

// MemoryGrant is a node's answer to a memory read: the blocks that the
// bytes asked for touch, from block First on.
type MemoryGrant struct {
	Length    int64 // bytes of the page
	BlockSize int64
	First     int
	Blocks    []MemoryBlock
	Waited    bool // the node waited for a fill in flight of some of them
	// Fetch is a filling read's report of the fetch (op 6): nil when the
	// node fetched nothing for it.
	Fetch *nodepb.PageFetch
}

// MemoryBlocks returns the memory tier's blocks that bytes [off, end) of
// page index of ref touch, and the index of the first, for a reader on this
// host that copies them out of this process (memory short-circuit reads).
// The caller holds the slices for as long as that reader may copy from
// them: a block's memory is reused only once nothing refers to it. It
// returns an error wrapping ErrMissing when any of those blocks is not in
// memory, and ErrNotHeld too when the store holds no block of the page.
func (s *Store) MemoryBlocks(ref FileRef, index, off, end int64) (first int, blocks [][]byte, crcs []uint32, err error) {
	if s.closed.Load() {
		return 0, nil, nil, ErrStoreClosed
	}
	id := PageID{File: ref.ID(), Index: index}
	length := s.geo.pageLen(ref.Size, index)
	if length == 0 || off < 0 || end <= off || end > length {
		return 0, nil, nil, fmt.Errorf("memory blocks of %s page %d [%d,%d) (page length %d): %w", ref, index, off, end, length, errPageRange)
	}
	e := s.lookup(id)
	if e == nil {
		return 0, nil, nil, fmt.Errorf("page %s: %w: %w", id, ErrMissing, ErrNotHeld)
	}
	if e.length != length {
		return 0, nil, nil, fmt.Errorf("page %s is not in memory: %w", id, ErrMissing)
	}
	b0, b1 := s.geo.blockRange(off, end)
	blocks, crcs = make([][]byte, 0, b1-b0), make([]uint32, 0, b1-b0)
	e.mu.RLock()
	for b := b0; b < b1 && e.mem != nil && e.mem[b] != nil; b++ {
		blocks, crcs = append(blocks, e.mem[b]), append(crcs, e.crc[b])
	}
	e.mu.RUnlock()
	if len(blocks) != b1-b0 {
		return 0, nil, nil, fmt.Errorf("page %s blocks [%d,%d) are not all in memory: %w", id, b0, b1, ErrMissing)
	}
	e.lastUse.Store(s.tick())
	s.memHits.Add(1)
	return b0, blocks, crcs, nil
}

// answerMemory answers a memory read (op 2, or op 6 when req.Fill): the
// grant, and the blocks the connection holds until the client is done with
// them.
func (s *ShortCircuitServer) answerMemory(ref FileRef, req ShortCircuitRequest) ([]byte, [][]byte) {
	first, blocks, crcs, err := s.cfg.Store.MemoryBlocks(ref, req.Page, req.Off, req.End)
	waited, filled := false, false
	var fetch []byte
	if errors.Is(err, ErrMissing) && s.cfg.Cache != nil {
		if req.Fill {
			fetch, filled, err = s.fill(ref, req)
			if err != nil || filled {
				// A read that found blocks missing in both tiers, as
				// Store.Read counts one (for op 2, the client's gRPC
				// read counts it); one the disk tier held is not.
				s.cfg.Store.misses.Add(1)
			}
			if err != nil {
				s.errs.Add(1)
				return scResponse(scError, err.Error()), nil
			}
			first, blocks, crcs, err = s.cfg.Store.MemoryBlocks(ref, req.Page, req.Off, req.End)
			if errors.Is(err, ErrMissing) && s.awaitFills(ref, req) {
				// A fill's readers are woken before the memory tier
				// takes its bytes: they are there now, or the memory
				// tier did not keep them and the page file has them,
				// which the client asks for next.
				first, blocks, crcs, err = s.cfg.Store.MemoryBlocks(ref, req.Page, req.Off, req.End)
			}
		} else if s.awaitFills(ref, req) {
			waited = true
			first, blocks, crcs, err = s.cfg.Store.MemoryBlocks(ref, req.Page, req.Off, req.End)
		}
	} else if err == nil && req.Fill && s.cfg.Cache != nil {
		// A page a readahead brought over a line: the first read that
		// can say so reports the crossing (op 2 cannot).
		if o := s.cfg.Cache.ClaimAhead(ref, req.Page); o != nil {
			fetch, err = fetchReport([]Fetch{{Page: req.Page, Tier: TierMemory, Origin: o}}, req)
		}
	}
	if errors.Is(err, ErrMissing) {
		s.notInMemory.Add(1)
		if errors.Is(err, ErrNotHeld) && !req.Fill {
			// Nothing to grant a descriptor of either: the client need
			// not ask for one.
			return scResponse(scNotHeld, ""), nil
		}
		b := scResponse(scNotOnDisk, "")
		if req.Fill {
			// The client reads the page file, and reports this.
			b = appendSCReport(b, fetch)
		}
		return b, nil
	}
	if err != nil {
		s.errs.Add(1)
		return scResponse(scError, err.Error()), nil
	}
	s.memGrants.Add(1)
	if filled {
		s.fills.Add(1)
	}
	le := binary.LittleEndian
	b := scResponse(scInMemory, "")
	b = le.AppendUint64(b, uint64(s.cfg.Store.geo.pageLen(ref.Size, req.Page)))
	b = le.AppendUint64(b, uint64(s.cfg.Store.geo.blockSize))
	b = le.AppendUint32(b, uint32(first))
	b = le.AppendUint32(b, uint32(len(blocks)))
	if waited {
		b = le.AppendUint32(b, 1)
	} else {
		b = le.AppendUint32(b, 0)
	}
	for i, m := range blocks {
		b = le.AppendUint64(b, uint64(uintptr(unsafe.Pointer(unsafe.SliceData(m)))))
		b = le.AppendUint32(b, uint32(len(m)))
		b = le.AppendUint32(b, crcs[i])
	}
	if req.Fill {
		b = appendSCReport(b, fetch)
	}
	le.PutUint32(b, uint32(len(b)-4))
	return b, blocks
}

// appendSCReport appends a filling read's report (length-prefixed; empty
// when the node fetched nothing for it) to response b, whose length
// prefix it sets.
func appendSCReport(b, report []byte) []byte {
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(len(report)))
	b = append(b, report...)
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// awaitFills waits, at most scAwaitFill, until the fills in flight of the
// bytes req asks for are stored (Cache.AwaitFills), and reports whether
// they are.
func (s *ShortCircuitServer) awaitFills(ref FileRef, req ShortCircuitRequest) bool {
	ctx, cancel := context.WithTimeout(context.Background(), scAwaitFill)
	defer cancel()
	return s.cfg.Cache.AwaitFills(ctx, ref, req.Page, req.Off, req.End)
}

// fill fetches the bytes a filling memory read asks for, as a gRPC Read
// of them would (Node.Read), and returns the fill's report of the page
// (nodepb.PageFetch, encoded), or nil when nothing was fetched (the node
// held the bytes on disk, or they came in meanwhile).
func (s *ShortCircuitServer) fill(ref FileRef, req ShortCircuitRequest) (report []byte, fetched bool, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, ShortCircuitFillTimeout)
	defer cancel()
	if req.Class != "" {
		ctx = WithFill(ctx, Fill{Class: req.Class})
	}
	off := req.Page*s.cfg.Store.PageSize() + req.Off
	ctx, span := s.cfg.Tracer.Start(ctx, "node.read", trace.WithAttributes(
		attribute.String("lakemesh.path", req.Path),
		attribute.Int64("lakemesh.offset", off),
		attribute.Int64("lakemesh.length", req.End-req.Off),
		attribute.String("lakemesh.node", s.cfg.Node),
		attribute.Bool("lakemesh.short_circuit", true),
	))
	defer span.End()
	fs, err := s.cfg.Cache.Fill(ctx, ref, off, req.End-req.Off, req.Sequential)
	if err != nil {
		span.RecordError(err)
		return nil, false, fmt.Errorf("fill %s: %w", req.Path, err)
	}
	fetched = slices.ContainsFunc(fs, func(f Fetch) bool { return f.Page == req.Page && f.Tier != TierMemory })
	report, err = fetchReport(fs, req)
	return report, fetched, err
}

// fetchReport encodes the report of req's page among fs for a filling
// read's answer: nil when the page was held in memory and crossed no line
// for this read.
func fetchReport(fs []Fetch, req ShortCircuitRequest) ([]byte, error) {
	var sum fetchSummary
	sum.add(fs)
	pf := sum.by[req.Page]
	if pf == nil || (pf.Tier == string(TierMemory) && pf.Region == "") {
		return nil, nil
	}
	pf.Bytes = req.End - req.Off
	return proto.Marshal(pf)
}

// decodeMemoryGrant decodes the rest of a status 3 response, to a filling
// read (op 6) when fill.
func decodeMemoryGrant(r *sidecarReader, fill bool) (MemoryGrant, error) {
	var g MemoryGrant
	g.Length, g.BlockSize = r.i64(), r.i64()
	g.First = int(r.u32())
	n := int(r.u32())
	g.Waited = r.u32() == 1
	if r.err != nil || n > scMaxMemBlocks || g.BlockSize <= 0 {
		return g, errBadSCFrame
	}
	g.Blocks = make([]MemoryBlock, n)
	for i := range g.Blocks {
		g.Blocks[i] = MemoryBlock{Addr: uintptr(r.i64()), Len: int(r.u32()), CRC: r.u32()}
		want := min(g.BlockSize, g.Length-int64(g.First+i)*g.BlockSize)
		if int64(g.Blocks[i].Len) != want {
			return g, fmt.Errorf("%w: block %d of %d bytes, want %d", errBadSCFrame, g.First+i, g.Blocks[i].Len, want)
		}
	}
	if fill {
		var err error
		if g.Fetch, err = decodeSCReport(r); err != nil {
			return g, err
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return g, errBadSCFrame
	}
	return g, nil
}

// decodeSCReport decodes a filling read's report (appendSCReport): nil
// when the node fetched nothing for the read.
func decodeSCReport(r *sidecarReader) (*nodepb.PageFetch, error) {
	b := r.str()
	switch {
	case r.err != nil:
		return nil, errBadSCFrame
	case b == "":
		return nil, nil
	}
	pf := &nodepb.PageFetch{}
	if err := proto.Unmarshal([]byte(b), pf); err != nil {
		return nil, fmt.Errorf("%w: fetch report: %v", errBadSCFrame, err)
	}
	return pf, nil
}
