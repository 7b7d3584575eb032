package cachenode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// Short-circuit local reads (like HDFS's over a domain socket): a client
// on the node's host asks the node, over a second Unix socket next to the
// gRPC one, for a page it wants to read; the node answers with a read-only
// file descriptor of the page's data file (SCM_RIGHTS) and the blocks the
// disk tier holds in it with their CRC-32Cs. The client then reads those
// blocks itself with pread, verifying each block's checksum as it reads,
// and pays no gRPC round trip and no copy through the node. Linux only
// (shortcircuit_linux.go); other platforms build without it and clients
// there read over gRPC.
//
// Why a handed-out descriptor stays right: a block of a page's data file
// is written once and never rewritten with other bytes (a page is one
// version of one file; a dropped block is written again only with the
// same bytes), and a dropped page's file is unlinked, which leaves the
// inode, and its blocks, to descriptors still open on it. A packed page's
// grant is a descriptor of its pack; its slot is never used for another
// page, and once dropped it reads as zeros, which fail their checksums. A
// block torn by
// a crash or corrupted on disk fails its checksum in the client, which
// then reads over gRPC (the node's own read drops and refetches it).
//
// The wire format, little-endian, one request and one response at a time
// on a connection, each framed by a uint32 length of what follows:
//
//	request:  magic "LMSC", format uint16 (1), op uint16 (1: open page),
//	          page int64, file size int64, page size int64,
//	          path, version: uint32 length + bytes each
//	response: magic "LMSC", format uint16 (1), status uint16,
//	          status 0 (granted, one descriptor attached): page length int64,
//	            block size int64, blocks uint32, bitmap uint64 per 64
//	            blocks (present in the file), CRC-32C uint32 per block,
//	            then for a packed page (pack.go) the offset int64 of its
//	            first byte in the pack attached (a page file's is 0)
//	          status 1: the disk tier does not hold the page
//	          status 2: error message (uint32 length + bytes)
//
// Path and version name the page the way a gRPC Read names its file (the
// namespace path and the version the client opened); the page size must be
// the store's. Only the store's own page files and packs are handed out,
// opened O_RDONLY. Trust: any process that can connect to the socket can read the
// cached pages of every file, the same as one that can read the cache
// directory; the socket is created 0660 like node.sock.
const (
	scMagic     = "LMSC"
	scFormat    = 1
	scOpOpen    = 1
	scGranted   = 0
	scNotOnDisk = 1
	scError     = 2
	// scMaxFrame bounds a frame either way (a path is at most 64 KiB).
	scMaxFrame = 1 << 20
)

// ShortCircuitSocket is the path of the short-circuit socket of a node
// whose gRPC Unix socket is grpcSocket: "node.sock" -> "node.fd.sock".
// Nodes serve it and clients find it by this name, so membership carries
// only the gRPC socket.
func ShortCircuitSocket(grpcSocket string) string {
	if grpcSocket == "" {
		return ""
	}
	return strings.TrimSuffix(grpcSocket, ".sock") + ".fd.sock"
}

// ShortCircuitRequest names the page a client wants to read itself.
type ShortCircuitRequest struct {
	Path     string // namespace path, as in a gRPC Read
	Version  string // the version the client opened
	Size     int64  // that version's size
	PageSize int64  // the client's page size; must be the node's
	Page     int64  // page index
	// Off and End are the page offsets of the bytes a memory read
	// (ReadShortCircuitMemory) asks for.
	Off, End int64
	// Fill makes a memory read fetch the bytes it asks for when the node
	// holds none of them (op 6, memgrant.go), and answer from memory once
	// they are in, where it would otherwise answer "not held" and the
	// client would read them over gRPC. Sequential and Class are the
	// fill's, as in a gRPC Read: whole pages, and the transfer class.
	Fill       bool
	Sequential bool
	Class      string

	withAttrs bool // a stat's (op 7): with the file's attrs
}

// ErrShortCircuitRefused is a node's answer that is neither a grant nor
// "not on disk": a bad request, or a filling read whose fill failed (the
// client reads over gRPC, whose answer names the error).
var ErrShortCircuitRefused = errors.New("short-circuit read refused by node")

// ErrShortCircuitUnknownRequest wraps ErrShortCircuitRefused for a refusal
// of a request the node does not know: an older node, asked for a filling
// read (op 6) or a stat (op 7). It will refuse every such request, so the
// client stops asking it.
var ErrShortCircuitUnknownRequest = fmt.Errorf("%w: a request the node does not know (an older node)", ErrShortCircuitRefused)

// scRefusal is the error of a node's refusal with message msg.
func scRefusal(msg string) error {
	// A node, whatever its version, answers a request of an op it does
	// not know with errBadSCFrame's text and the op (decodeSCRequest).
	if strings.HasPrefix(msg, errBadSCFrame.Error()+": op ") {
		return fmt.Errorf("%w: %s", ErrShortCircuitUnknownRequest, msg)
	}
	return fmt.Errorf("%w: %s", ErrShortCircuitRefused, msg)
}

// ShortCircuitConfig is what a node's short-circuit server needs.
type ShortCircuitConfig struct {
	Lakes *Lakes
	Store *Store
	// Cache, when set, lets a memory read wait for the fill in flight of
	// the blocks it asks for (a readahead's) instead of being answered
	// "not in memory" and read over gRPC, and a filling memory read (op 6)
	// fetch them.
	Cache *Cache
	// Tracer traces filling memory reads as a gRPC Read is ("node.read");
	// nil traces nothing.
	Tracer trace.Tracer
	// Node names this node in the reports of filling memory reads.
	Node string
	// MaxConns bounds the connections served at once (default 256: a
	// filling read holds its connection while its page comes, and each
	// client on the host waits for up to 16 of those); more wait in the
	// listen backlog.
	MaxConns int
	// Writes, when set, lends journal data files to clients on this host
	// for their writes (lend.go).
	Writes JournalLender
	// Stat, when set, answers stats on the socket (op 7, scstat.go) as
	// the node's gRPC Stat (or StatAttrs, withAttrs) does: the reply, or
	// a gRPC status error.
	Stat   func(ctx context.Context, p string, withAttrs bool) (*nodepb.StatAttrsReply, error)
	Logger *slog.Logger
}

// JournalLender lends journal data files and commits them (*Node is
// one).
type JournalLender interface {
	LendJournal(p string, attrs ufs.Attrs) (*LentFile, error)
	CommitLent(ctx context.Context, l *LentFile, c LentCommit) (*nodepb.Entry, error)
}

// ShortCircuitStats counts a short-circuit server's answers.
type ShortCircuitStats struct {
	Grants       int64 // descriptors handed out
	NotOnDisk    int64 // requests for pages the disk tier does not hold
	MemoryGrants int64 // memory reads answered with the blocks' addresses
	Fills        int64 // of those, filling reads (op 6) that fetched the blocks first
	NotInMemory  int64 // memory reads of blocks the memory tier does not hold
	Stats        int64 // stats answered (op 7), found or not
	Errors       int64 // requests refused (bad request, unknown mount, I/O)
	Lent         int64 // journal data files lent for writes
	Committed    int64 // of those, committed
}

// ShortCircuitServer serves a node's short-circuit socket (Serve is
// linux-only). Close stops it and closes its connections.
type ShortCircuitServer struct {
	cfg ShortCircuitConfig
	log *slog.Logger
	sem chan struct{}

	grants, notOnDisk, memGrants, fills, notInMemory, stats, errs atomic.Int64
	lent, committed, lending                                      atomic.Int64

	ctx  context.Context // ends at Close: filling reads' fills give up
	stop context.CancelFunc

	mu     sync.Mutex // guards closed, lis, conns
	closed bool
	lis    interface{ Close() error }
	conns  map[interface{ Close() error }]struct{}
	wg     sync.WaitGroup // connection goroutines
}

// NewShortCircuitServer returns a server for cfg.
func NewShortCircuitServer(cfg ShortCircuitConfig) *ShortCircuitServer {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	ctx, stop := context.WithCancel(context.Background())
	return &ShortCircuitServer{
		cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.MaxConns), ctx: ctx, stop: stop,
		conns: map[interface{ Close() error }]struct{}{},
	}
}

// Stats returns the server's counters.
func (s *ShortCircuitServer) Stats() ShortCircuitStats {
	return ShortCircuitStats{
		Grants: s.grants.Load(), NotOnDisk: s.notOnDisk.Load(),
		MemoryGrants: s.memGrants.Load(), Fills: s.fills.Load(), NotInMemory: s.notInMemory.Load(),
		Stats: s.stats.Load(), Errors: s.errs.Load(), Lent: s.lent.Load(), Committed: s.committed.Load(),
	}
}

// Close stops Serve, closes every connection and waits for their
// goroutines.
func (s *ShortCircuitServer) Close() error {
	s.stop()
	s.mu.Lock()
	s.closed = true
	var err error
	if s.lis != nil {
		err = s.lis.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// track registers a connection for Close; false when closed already.
func (s *ShortCircuitServer) track(c interface{ Close() error }) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *ShortCircuitServer) untrack(c interface{ Close() error }) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// scAnswer is a request's outcome: the response body (nil for a release),
// the page file to attach when granted (the caller closes it after
// sending), and the memory blocks the connection holds for the client
// until its next request.
type scAnswer struct {
	resp []byte
	file interface{ Close() error }
	fd   uintptr
	held [][]byte
}

// answer answers one request frame.
func (s *ShortCircuitServer) answer(body []byte) scAnswer {
	op, req, err := decodeSCRequest(body)
	if err != nil {
		s.errs.Add(1)
		return scAnswer{resp: scResponse(scError, err.Error())}
	}
	switch op {
	case scOpRelease:
		return scAnswer{}
	case scOpStat:
		return scAnswer{resp: s.answerStat(req.Path, req.withAttrs)}
	}
	lake, rel, err := s.cfg.Lakes.Resolve(req.Path)
	if err != nil {
		s.errs.Add(1)
		return scAnswer{resp: scResponse(scError, err.Error())}
	}
	if ps := s.cfg.Store.PageSize(); req.PageSize != ps {
		s.errs.Add(1)
		return scAnswer{resp: scResponse(scError, fmt.Sprintf("page size %d, node uses %d", req.PageSize, ps))}
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: req.Version, Size: req.Size}
	if op == scOpMemory || op == scOpFill {
		resp, held := s.answerMemory(ref, req) // decodeSCRequest set req.Fill for op 6
		return scAnswer{resp: resp, held: held}
	}
	f, dp, err := s.cfg.Store.OpenDiskPage(ref, req.Page)
	if errors.Is(err, ErrMissing) {
		s.notOnDisk.Add(1)
		return scAnswer{resp: scResponse(scNotOnDisk, "")}
	}
	if err != nil {
		s.errs.Add(1)
		s.log.Warn("short-circuit open failed", "file", ref, "page", req.Page, "err", err)
		return scAnswer{resp: scResponse(scError, err.Error())}
	}
	s.grants.Add(1)
	return scAnswer{resp: encodeSCGrant(dp), file: f, fd: f.Fd()}
}

// encodeSCRequest encodes a request of op (scOpOpen, scOpMemory,
// scOpFill or scOpRelease, which carries no fields).
func encodeSCRequest(op uint16, r ShortCircuitRequest) []byte {
	le := binary.LittleEndian
	b := make([]byte, 4, 4+4+4+40+8+len(r.Path)+len(r.Version))
	b = append(b, scMagic...)
	b = le.AppendUint16(b, scFormat)
	b = le.AppendUint16(b, op)
	if op != scOpRelease {
		for _, v := range []int64{r.Page, r.Size, r.PageSize} {
			b = le.AppendUint64(b, uint64(v))
		}
		for _, s := range []string{r.Path, r.Version} {
			b = le.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
	}
	if op == scOpMemory || op == scOpFill {
		b = le.AppendUint64(b, uint64(r.Off))
		b = le.AppendUint64(b, uint64(r.End))
	}
	if op == scOpFill {
		var seq uint16
		if r.Sequential {
			seq = 1
		}
		b = le.AppendUint16(b, seq)
		b = appendSCString(b, r.Class)
	}
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

var errBadSCFrame = errors.New("malformed short-circuit frame")

// scHeader checks a frame body's magic and format and returns the reader
// positioned after them.
func scHeader(body []byte) (*sidecarReader, error) {
	if len(body) < 6 || string(body[:4]) != scMagic {
		return nil, errBadSCFrame
	}
	r := &sidecarReader{b: body[4:]}
	if f := r.u16(); f != scFormat {
		return nil, fmt.Errorf("%w: format %d", errBadSCFrame, f)
	}
	return r, nil
}

func decodeSCRequest(body []byte) (uint16, ShortCircuitRequest, error) {
	var q ShortCircuitRequest
	r, err := scHeader(body)
	if err != nil {
		return 0, q, err
	}
	op := r.u16()
	switch op {
	case scOpOpen, scOpMemory, scOpFill:
		q.Page, q.Size, q.PageSize = r.i64(), r.i64(), r.i64()
		q.Path, q.Version = r.str(), r.str()
		if op != scOpOpen {
			q.Off, q.End = r.i64(), r.i64()
		}
		if op == scOpFill {
			q.Fill, q.Sequential, q.Class = true, r.u16() == 1, r.str()
		}
	case scOpRelease:
	case scOpStat:
		q.Path, q.withAttrs = r.str(), r.u16()&1 != 0
	default:
		return 0, q, fmt.Errorf("%w: op %d", errBadSCFrame, op)
	}
	if r.err != nil || len(r.b) != 0 {
		return 0, q, errBadSCFrame
	}
	return op, q, nil
}

func scResponse(status uint16, msg string) []byte {
	le := binary.LittleEndian
	b := make([]byte, 4, 4+8+4+len(msg))
	b = append(b, scMagic...)
	b = le.AppendUint16(b, scFormat)
	b = le.AppendUint16(b, status)
	if status == scError || status == scNotLendable {
		b = appendSCString(b, msg)
	}
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

func encodeSCGrant(dp DiskPage) []byte {
	le := binary.LittleEndian
	b := scResponse(scGranted, "")
	b = le.AppendUint64(b, uint64(dp.Length))
	b = le.AppendUint64(b, uint64(dp.BlockSize))
	b = le.AppendUint32(b, uint32(len(dp.Present)))
	bm := newBitmap(len(dp.Present))
	for i, p := range dp.Present {
		if p {
			bm.set(i)
		}
	}
	for _, w := range bm {
		b = le.AppendUint64(b, w)
	}
	for _, c := range dp.CRCs {
		b = le.AppendUint32(b, c)
	}
	if dp.Base != 0 {
		b = le.AppendUint64(b, uint64(dp.Base))
	}
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// decodeSCMemoryResponse decodes the response to a memory read (a
// filling one when fill): the blocks' addresses, or an error wrapping
// ErrMissing (not all in memory) or ErrShortCircuitRefused.
func decodeSCMemoryResponse(body []byte, fill bool) (MemoryGrant, error) {
	r, err := scHeader(body)
	if err != nil {
		return MemoryGrant{}, err
	}
	switch st := r.u16(); st {
	case scInMemory:
		return decodeMemoryGrant(r, fill)
	case scNotOnDisk:
		var g MemoryGrant
		if fill {
			var err error
			if g.Fetch, err = decodeSCReport(r); err != nil {
				return g, err
			}
		}
		return g, fmt.Errorf("short-circuit memory read: %w", ErrMissing)
	case scNotHeld:
		return MemoryGrant{}, fmt.Errorf("short-circuit memory read: %w: %w", ErrMissing, ErrNotHeld)
	case scError:
		return MemoryGrant{}, scRefusal(r.str())
	default:
		return MemoryGrant{}, fmt.Errorf("%w: status %d", errBadSCFrame, st)
	}
}

// decodeSCResponse decodes a response body: the grant, or an error
// wrapping ErrMissing (not on disk) or ErrShortCircuitRefused.
func decodeSCResponse(body []byte) (DiskPage, error) {
	var dp DiskPage
	r, err := scHeader(body)
	if err != nil {
		return dp, err
	}
	switch st := r.u16(); st {
	case scGranted:
	case scNotOnDisk:
		return dp, fmt.Errorf("short-circuit: %w", ErrMissing)
	case scError:
		return dp, scRefusal(r.str())
	default:
		return dp, fmt.Errorf("%w: status %d", errBadSCFrame, st)
	}
	dp.Length, dp.BlockSize = r.i64(), r.i64()
	n := int(r.u32())
	if r.err != nil || n > 1<<20 || dp.BlockSize <= 0 || int64(n) != (dp.Length+dp.BlockSize-1)/dp.BlockSize {
		return dp, errBadSCFrame
	}
	bm := newBitmap(n)
	for i := range bm {
		bm[i] = uint64(r.i64())
	}
	dp.Present, dp.CRCs = make([]bool, n), make([]uint32, n)
	for i := range n {
		dp.Present[i] = bm.has(i)
		dp.CRCs[i] = r.u32()
	}
	if len(r.b) == 8 {
		dp.Base = r.i64() // a packed page
	}
	if r.err != nil || len(r.b) != 0 || dp.Base < 0 {
		return dp, errBadSCFrame
	}
	return dp, nil
}

// BlockCRC is the CRC-32C of a block, as the store records it; a client
// reading blocks of a short-circuit grant verifies each with it.
func BlockCRC(b []byte) uint32 { return blockCRC(b) }

// ColdBlockCRC is BlockCRC for a block verified where it lies in memory,
// not in a buffer just read into (a mapping of a page file): it loads the
// block into the CPU's cache first, at the memory's speed.
func ColdBlockCRC(b []byte) uint32 { return coldBlockCRC(b) }
