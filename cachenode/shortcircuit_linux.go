//go:build linux

package cachenode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
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

// serveConn answers the requests of one connection in order.
func (s *ShortCircuitServer) serveConn(c *net.UnixConn) {
	var hdr [4]byte
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
		resp, file, fd := s.answer(body)
		var oob []byte
		if file != nil {
			oob = syscall.UnixRights(int(fd))
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		err := writeMsg(c, resp, oob)
		if file != nil {
			file.Close() // the client holds its own copy now
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
	if _, err := c.Write(encodeSCRequest(req)); err != nil {
		return nil, DiskPage{}, err
	}
	buf := make([]byte, 4<<10)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	var fds []int
	closeFDs := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
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
			closeFDs()
			return nil, DiskPage{}, err
		}
		if need < 0 && have >= 4 {
			need = 4 + int(binary.LittleEndian.Uint32(buf))
			if need > scMaxFrame {
				closeFDs()
				return nil, DiskPage{}, errBadSCFrame
			}
			if need > len(buf) {
				buf = append(buf, make([]byte, need-len(buf))...)
			}
		}
	}
	if have != need {
		closeFDs()
		return nil, DiskPage{}, fmt.Errorf("%w: %d bytes past the response", errBadSCFrame, have-need)
	}
	dp, err := decodeSCResponse(buf[4:need])
	if err == nil && len(fds) != 1 {
		err = fmt.Errorf("%w: %d descriptors with a grant", errBadSCFrame, len(fds))
	}
	if err != nil {
		closeFDs()
		return nil, DiskPage{}, err
	}
	return os.NewFile(uintptr(fds[0]), fmt.Sprintf("short-circuit %s page %d", req.Path, req.Page)), dp, nil
}
