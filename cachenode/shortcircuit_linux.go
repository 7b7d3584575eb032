//go:build linux

package cachenode

import (
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
	for {
		c.SetReadDeadline(time.Now().Add(scIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n > scMaxFrame {
			return
		}
		body := make([]byte, n)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, body); err != nil {
			return
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
		err := writeMsg(c, a.resp, oob)
		if a.file != nil {
			a.file.Close() // the client holds its own copy now
		}
		if err != nil {
			return
		}
	}
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
	closeFDs := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	if err != nil {
		closeFDs()
		return nil, DiskPage{}, err
	}
	dp, err := decodeSCResponse(body)
	if err == nil && len(fds) != 1 {
		err = fmt.Errorf("%w: %d descriptors with a grant", errBadSCFrame, len(fds))
	}
	if err != nil {
		closeFDs()
		return nil, DiskPage{}, err
	}
	return os.NewFile(uintptr(fds[0]), fmt.Sprintf("short-circuit %s page %d", req.Path, req.Page)), dp, nil
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
// its bytes is used. It returns TierMemory, or TierWait when the node
// waited for a fill in flight of some of them. Errors wrapping ErrMissing
// (not all in memory), ErrMemoryReadDenied and ErrShortCircuitChecksum
// leave c usable; any other error leaves it unusable.
func ReadShortCircuitMemory(c *net.UnixConn, req ShortCircuitRequest, buf []byte, deadline time.Time) (Tier, error) {
	if req.End-req.Off != int64(len(buf)) || len(buf) == 0 {
		return "", fmt.Errorf("memory read of page bytes [%d,%d) into %d bytes", req.Off, req.End, len(buf))
	}
	c.SetDeadline(deadline)
	if _, err := c.Write(encodeSCRequest(scOpMemory, req)); err != nil {
		return "", err
	}
	body, fds, err := readSCFrame(c)
	for _, fd := range fds {
		syscall.Close(fd)
	}
	if err != nil {
		return "", err
	}
	g, err := decodeSCMemoryResponse(body)
	if err != nil {
		return "", err
	}
	err = copyMemoryGrant(c, g, req.Off, buf)
	// Done with the blocks: the node lets go of them. A failed write
	// leaves c broken, which the next request finds.
	c.Write(encodeSCRequest(scOpRelease, ShortCircuitRequest{}))
	if err != nil {
		return "", err
	}
	if g.Waited {
		return TierWait, nil
	}
	return TierMemory, nil
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
