//go:build linux

package cachenode

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// ShortCircuitSupported says whether this platform passes page file
// descriptors (SCM_RIGHTS over a Unix socket).
const ShortCircuitSupported = true

// scIdle is how long a connection may sit between requests before the
// node closes it (clients keep a few idle ones and redial).
const scIdle = 2 * time.Minute

// Serve accepts connections on lis (a Unix socket listener) until Close,
// at most MaxConns served at once.
func (s *ShortCircuitServer) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		lis.Close()
		return net.ErrClosed
	}
	s.lis = lis
	s.mu.Unlock()
	for {
		s.sem <- struct{}{}
		c, err := lis.Accept()
		if err != nil {
			<-s.sem
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok || !s.track(uc) {
			c.Close()
			<-s.sem
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { s.untrack(uc); uc.Close(); <-s.sem; s.wg.Done() }()
			s.serveConn(uc)
		}()
	}
}

// serveConn answers the requests of one connection in order. The memory
// blocks of a memory read's answer stay held until the next request.
func (s *ShortCircuitServer) serveConn(c *net.UnixConn) {
	var hdr [4]byte
	var held [][]byte
	defer runtime.KeepAlive(&held)
	// One read takes a whole request (and a release with the request
	// after it, when both have come): a request frame is a few hundred
	// bytes.
	br := bufio.NewReaderSize(c, 4<<10)
	for {
		c.SetReadDeadline(time.Now().Add(scIdle))
		body, err := readSCRequest(c, br, hdr[:])
		if err != nil {
			return
		}
		if r, err := scHeader(body); err == nil && r.u16() == scOpLend {
			held = nil
			if s.serveLend(c, br, r) {
				return // one lent file per connection
			}
			continue // refused: the connection serves on
		}
		a := s.answer(body)
		held = a.held // the client is done with the previous answer's
		if a.resp == nil {
			continue // a release: no answer
		}
		var oob []byte
		if a.file != nil {
			oob = syscall.UnixRights(int(a.fd))
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		err = writeMsg(c, a.resp, oob)
		if a.file != nil {
			a.file.Close() // the client holds its own copy now
		}
		if err != nil {
			return
		}
	}
}

// readSCRequest reads one request frame from c through br (the read
// deadline of its first byte is the caller's).
func readSCRequest(c *net.UnixConn, br *bufio.Reader, hdr []byte) ([]byte, error) {
	if _, err := io.ReadFull(br, hdr[:4]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n > scMaxFrame {
		return nil, errBadSCFrame
	}
	body := make([]byte, n)
	if br.Buffered() < int(n) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return body, nil
}

// serveLend lends a journal data file (lend.go) and waits, for as long
// as the client writes it, for its commit; a connection that ends first
// removes the file. It reports whether the connection is done: after a
// lend it is, while a refused lend leaves it to serve the next request
// (clients ask on pooled connections, and most writes are refused: they
// are not journaled).
func (s *ShortCircuitServer) serveLend(c *net.UnixConn, br *bufio.Reader, r *sidecarReader) bool {
	reply := func(b, oob []byte) bool {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return writeMsg(c, b, oob) == nil
	}
	refuse := func(b []byte) bool { return !reply(b, nil) }
	p, attrs, err := decodeLendRequest(r)
	if err != nil {
		s.errs.Add(1)
		return refuse(scResponse(scError, err.Error()))
	}
	w := s.cfg.Writes
	if w == nil {
		return refuse(scResponse(scNotLendable, "this node lends no journal files"))
	}
	if s.lending.Add(1) > scLendMax {
		s.lending.Add(-1)
		return refuse(scResponse(scNotLendable, fmt.Sprintf("%d files are lent already", scLendMax)))
	}
	defer s.lending.Add(-1)
	l, err := w.LendJournal(p, attrs)
	if errors.Is(err, ErrNotLendable) {
		return refuse(scResponse(scNotLendable, err.Error()))
	}
	if err != nil {
		s.errs.Add(1)
		return refuse(scResponse(scError, err.Error()))
	}
	defer l.Abort() // nothing once committed
	if !reply(scResponse(scGranted, ""), syscall.UnixRights(int(l.f.Fd()))) {
		return true
	}
	s.lent.Add(1)
	var hdr [4]byte
	c.SetReadDeadline(time.Time{}) // a file is written for as long as it takes
	body, err := readSCRequest(c, br, hdr[:])
	if err != nil {
		return true
	}
	cm, err := decodeCommitRequest(body)
	if err != nil {
		s.errs.Add(1)
		reply(scResponse(scError, err.Error()), nil)
		return true
	}
	e, err := w.CommitLent(context.Background(), l, cm)
	if err != nil {
		s.errs.Add(1)
		s.log.Warn("lent journal file not committed", "path", p, "err", err)
		reply(scResponse(scError, err.Error()), nil)
		return true
	}
	s.committed.Add(1)
	reply(encodeCommitted(e), nil)
	return true
}

// LendJournalFile asks the node at the other end of c, a connection used
// for nothing else until the commit, to lend a journal data file for a
// new write of p (lend.go). It returns the file, read-write, or an error
// wrapping ErrNotLendable when the node does not lend for this write. The
// caller commits on c (CommitLentFile) or closes c to give the file up.
func LendJournalFile(c *net.UnixConn, p string, attrs ufs.Attrs, deadline time.Time) (*os.File, error) {
	c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(encodeLendRequest(p, attrs)); err != nil {
		return nil, err
	}
	body, fds, err := readSCFrame(c)
	if err == nil {
		err = decodeLent(body)
	}
	if err == nil && len(fds) != 1 {
		err = fmt.Errorf("%w: %d descriptors with a lent file", errBadSCFrame, len(fds))
	}
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "lent journal file of "+p), nil
}

// CommitLentFile commits the file lent on c and returns the entry the
// node answers, as a Write's.
func CommitLentFile(c *net.UnixConn, cm LentCommit, deadline time.Time) (*nodepb.Entry, error) {
	c.SetDeadline(deadline)
	if _, err := c.Write(encodeCommitRequest(cm)); err != nil {
		return nil, err
	}
	body, fds, err := readSCFrame(c)
	closeFDs(fds)
	if err != nil {
		return nil, err
	}
	return decodeCommitted(body)
}

// writeMsg writes b with oob attached to its first byte.
func writeMsg(c *net.UnixConn, b, oob []byte) error {
	n, _, err := c.WriteMsgUnix(b, oob, nil)
	if err == nil && n < len(b) {
		_, err = c.Write(b[n:])
	}
	return err
}

// OpenShortCircuit asks the node at the other end of c for a read-only
// descriptor of a page's data file (see shortcircuit.go). It returns the
// file and the blocks present in it with their checksums, or an error
// wrapping ErrMissing when the node's disk tier does not hold the page.
// Any other error leaves c unusable. The caller closes the file.
func OpenShortCircuit(c *net.UnixConn, req ShortCircuitRequest, deadline time.Time) (*os.File, DiskPage, error) {
	c.SetDeadline(deadline)
	if _, err := c.Write(encodeSCRequest(scOpOpen, req)); err != nil {
		return nil, DiskPage{}, err
	}
	body, fds, err := readSCFrame(c)
	if err != nil {
		closeFDs(fds)
		return nil, DiskPage{}, err
	}
	dp, err := decodeSCResponse(body)
	if err == nil && len(fds) != 1 {
		err = fmt.Errorf("%w: %d descriptors with a grant", errBadSCFrame, len(fds))
	}
	if err != nil {
		closeFDs(fds)
		return nil, DiskPage{}, err
	}
	return os.NewFile(uintptr(fds[0]), fmt.Sprintf("short-circuit %s page %d", req.Path, req.Page)), dp, nil
}

// closeFDs closes descriptors received with a frame and not kept.
func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// readSCFrame reads one response frame from c and the descriptors that
// came with it.
func readSCFrame(c *net.UnixConn) ([]byte, []int, error) {
	buf := make([]byte, 4<<10)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	var fds []int
	have, need := 0, -1
	for need < 0 || have < need {
		if have == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, oobn, _, _, err := c.ReadMsgUnix(buf[have:], oob)
		if oobn > 0 {
			if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for i := range msgs {
					if got, perr := syscall.ParseUnixRights(&msgs[i]); perr == nil {
						fds = append(fds, got...)
					}
				}
			}
		}
		have += n
		if err == nil && n == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, fds, err
		}
		if need < 0 && have >= 4 {
			need = 4 + int(binary.LittleEndian.Uint32(buf))
			if need > scMaxFrame {
				return nil, fds, errBadSCFrame
			}
			if need > len(buf) {
				buf = append(buf, make([]byte, need-len(buf))...)
			}
		}
	}
	if have != need {
		return nil, fds, fmt.Errorf("%w: %d bytes past the response", errBadSCFrame, have-need)
	}
	return buf[4:need], fds, nil
}

// ErrMemoryReadDenied is a memory short-circuit read this process may not
// make: process_vm_readv(2) of the node was refused (another user, Yama's
// ptrace_scope, no shared process namespace). Page files still work.
var ErrMemoryReadDenied = errors.New("reading the node's memory is not permitted")

// ErrShortCircuitChecksum is a block read through short-circuit that
// failed its checksum: none of its bytes may be used.
var ErrShortCircuitChecksum = errors.New("short-circuit block failed its checksum")

// ReadShortCircuitMemory reads bytes [req.Off, req.End) of a page, which
// must be len(buf) bytes, from the memory tier of the node at the other
// end of c (memgrant.go): it asks where the blocks lie, copies them with
// process_vm_readv(2) and verifies every block's checksum before any of
// its bytes is used. When req.Fill, the node fetches the bytes first if it
// holds none of them. It reports where the bytes came from: TierMemory,
// TierWait when the node waited for a fill in flight of some of them, or
// the filling read's own report (its tier, and the region, lines and cost
// when they crossed a line). Errors wrapping ErrMissing (not all in
// memory), ErrMemoryReadDenied, ErrShortCircuitChecksum and a node's
// refusal (a fill that failed) leave c usable; any other error leaves it
// unusable. With an error, pf is the report of a fill the node made for
// this read when it made one (the memory tier did not keep the bytes, or
// this process may not copy them): the caller reads the bytes otherwise
// and reports it. The end of ctx ends the wait for the answer at once (a
// fill may take long; it goes on at the node).
func ReadShortCircuitMemory(ctx context.Context, c *net.UnixConn, req ShortCircuitRequest, buf []byte, deadline time.Time) (pf *nodepb.PageFetch, err error) {
	if req.End-req.Off != int64(len(buf)) || len(buf) == 0 {
		return nil, fmt.Errorf("memory read of page bytes [%d,%d) into %d bytes", req.Off, req.End, len(buf))
	}
	op := uint16(scOpMemory)
	if req.Fill {
		op = scOpFill
	}
	c.SetDeadline(deadline)
	ended := watchCtx(ctx, c)
	defer func() {
		if ended() && err != nil {
			err = fmt.Errorf("short-circuit memory read given up: %w", ctx.Err())
		}
	}()
	if _, err := c.Write(encodeSCRequest(op, req)); err != nil {
		return nil, err
	}
	body, fds, err := readSCFrame(c)
	closeFDs(fds)
	if err != nil {
		return nil, err
	}
	g, err := decodeSCMemoryResponse(body, req.Fill)
	if err != nil {
		return g.Fetch, err
	}
	err = copyMemoryGrant(c, g, req.Off, buf)
	// Done with the blocks: the node lets go of them. A failed write
	// leaves c broken, which the next request finds.
	c.Write(encodeSCRequest(scOpRelease, ShortCircuitRequest{}))
	if err != nil {
		return g.Fetch, err
	}
	switch {
	case g.Fetch != nil:
		return g.Fetch, nil
	case g.Waited:
		return &nodepb.PageFetch{Page: req.Page, Tier: string(TierWait), Bytes: int64(len(buf))}, nil
	default:
		return &nodepb.PageFetch{Page: req.Page, Tier: string(TierMemory), Bytes: int64(len(buf))}, nil
	}
}

// watchCtx makes the end of ctx end what c is blocked on (it sets c's
// deadline to now). The returned func stops that and reports whether ctx
// ended, once c's deadline is set: before the next user of c sets its own.
func watchCtx(ctx context.Context, c *net.UnixConn) (ended func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	poked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.SetDeadline(time.Now())
		close(poked)
	})
	return func() bool {
		if stop() {
			return false
		}
		<-poked
		return true
	}
}

// StatShortCircuit asks the node at the other end of c for its Stat of p,
// or its StatAttrs when withAttrs (op 7, scstat.go). answered reports
// whether err, if any, is the node's answer: a gRPC status error, as its
// gRPC call would have returned. When it is not, the caller asks over
// gRPC; c is usable after a refusal (an error wrapping
// ErrShortCircuitRefused: a node that does not answer stats here),
// unusable after any other. The end of ctx ends the wait.
func StatShortCircuit(ctx context.Context, c *net.UnixConn, p string, withAttrs bool, deadline time.Time) (reply *nodepb.StatAttrsReply, answered bool, err error) {
	c.SetDeadline(deadline)
	ended := watchCtx(ctx, c)
	defer func() {
		if ended() && !answered {
			err = fmt.Errorf("short-circuit stat given up: %w", ctx.Err())
		}
	}()
	if _, err := c.Write(encodeSCStat(p, withAttrs)); err != nil {
		return nil, false, err
	}
	body, fds, err := readSCFrame(c)
	closeFDs(fds)
	if err != nil {
		return nil, false, err
	}
	return decodeSCStatReply(body)
}

// copyMemoryGrant copies page bytes [off, off+len(buf)) from the node's
// blocks g lists into buf, in runs of CheckRun bytes, each verified right
// after it is copied (while it is in cache). Blocks the range takes part
// of go through a scratch block.
func copyMemoryGrant(c *net.UnixConn, g MemoryGrant, off int64, buf []byte) error {
	pid, err := peerPID(c)
	if err != nil {
		return err
	}
	bs := g.BlockSize
	end := off + int64(len(buf))
	if int64(g.First)*bs > off || int64(g.First+len(g.Blocks))*bs < min(end, g.Length) {
		return fmt.Errorf("%w: blocks [%d,+%d) for bytes [%d,%d)", errBadSCFrame, g.First, len(g.Blocks), off, end)
	}
	var scratch []byte
	step := max(1, int(CheckRun/bs))
	local := make([]unix.Iovec, 0, step)
	remote := make([]unix.RemoteIovec, 0, step)
	dsts := make([][]byte, 0, step)
	for i := 0; i < len(g.Blocks); i += step {
		blocks := g.Blocks[i:min(i+step, len(g.Blocks))]
		local, remote, dsts = local[:0], remote[:0], dsts[:0]
		want := 0
		for k, m := range blocks {
			start := int64(g.First+i+k) * bs
			var dst []byte
			if start >= off && start+int64(m.Len) <= end {
				dst = buf[start-off : start-off+int64(m.Len)]
			} else {
				if scratch == nil {
					scratch = make([]byte, 2*bs) // at most the first and last block
				}
				if start < off {
					dst = scratch[:m.Len]
				} else {
					dst = scratch[bs : bs+int64(m.Len)]
				}
			}
			dsts = append(dsts, dst)
			want += len(dst)
			iov := unix.Iovec{Base: unsafe.SliceData(dst)}
			iov.SetLen(len(dst))
			local = append(local, iov)
			remote = append(remote, unix.RemoteIovec{Base: m.Addr, Len: m.Len})
		}
		n, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("%w: %v", ErrMemoryReadDenied, err)
		}
		if err != nil {
			return fmt.Errorf("short-circuit memory read: %w", err)
		}
		if n != want {
			return fmt.Errorf("short-circuit memory read: %d of %d bytes", n, want)
		}
		for k, m := range blocks {
			if blockCRC(dsts[k]) != m.CRC {
				return fmt.Errorf("block %d: %w", g.First+i+k, ErrShortCircuitChecksum)
			}
			start := int64(g.First+i+k) * bs
			if start < off || start+int64(m.Len) > end {
				lo, hi := max(off, start), min(end, start+int64(m.Len))
				copy(buf[lo-off:hi-off], dsts[k][lo-start:hi-start])
			}
		}
	}
	return nil
}

// peerPID is the process ID of the node at the other end of c, as this
// process's PID namespace numbers it (0 when it cannot see it).
func peerPID(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	if cred.Pid <= 0 {
		return 0, fmt.Errorf("%w: the node's process is not visible from here", ErrMemoryReadDenied)
	}
	return int(cred.Pid), nil
}
