//go:build linux

package router

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/lakemesh/lakemesh/cachenode"
)

// An older node's short-circuit socket, as this version's clients meet it
// in a rolling upgrade: the wire format of its frames, written out here
// as an older node writes them (cachenode's constants are its own).
const (
	olderMagic   = "LMSC"
	olderFormat  = 1
	olderError   = 2 // the status of a refusal, with its message
	olderRelease = 3 // the one op answered with nothing
)

// olderShortCircuit puts an older node's short-circuit socket in front of
// n's server: a request of an op in unknown is refused as a node that does
// not know it refuses it; every other request goes on to n's server, and
// its answer, descriptors and all, comes back. It returns how many
// requests of each op came.
func (n *scNode) olderShortCircuit(t *testing.T, unknown ...uint16) func(op uint16) int {
	t.Helper()
	lis := n.takeShortCircuitSocket(t)
	t.Cleanup(func() { lis.Close() })
	newer := filepath.Join(filepath.Dir(lis.Addr().String()), "newer.fd.sock")
	nl, err := net.Listen("unix", newer)
	if err != nil {
		t.Fatal(err)
	}
	n.sc = cachenode.NewShortCircuitServer(n.scConfig) // closed with the node
	go n.sc.Serve(nl)

	var mu sync.Mutex
	asked := map[uint16]int{}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("unix", newer)
				if err != nil {
					return
				}
				defer u.Close()
				for {
					frame, err := readOlderFrame(c)
					if err != nil {
						return
					}
					op := binary.LittleEndian.Uint16(frame[10:12]) // after length, magic and format
					mu.Lock()
					asked[op]++
					mu.Unlock()
					switch {
					case slices.Contains(unknown, op):
						msg := "malformed short-circuit frame: op " + strconv.Itoa(int(op))
						b := binary.LittleEndian.AppendUint32(nil, 0)
						b = append(b, olderMagic...)
						b = binary.LittleEndian.AppendUint16(b, olderFormat)
						b = binary.LittleEndian.AppendUint16(b, olderError)
						b = binary.LittleEndian.AppendUint32(b, uint32(len(msg)))
						b = append(b, msg...)
						binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
						if _, err := c.Write(b); err != nil {
							return
						}
					case op == olderRelease:
						if _, err := u.Write(frame); err != nil {
							return
						}
					default:
						if _, err := u.Write(frame); err != nil || forwardAnswer(u.(*net.UnixConn), c.(*net.UnixConn)) != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return func(op uint16) int {
		mu.Lock()
		defer mu.Unlock()
		return asked[op]
	}
}

// readOlderFrame reads one length-prefixed frame, its length included.
func readOlderFrame(r io.Reader) ([]byte, error) {
	head := make([]byte, 4)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, err
	}
	frame := make([]byte, 4+binary.LittleEndian.Uint32(head))
	copy(frame, head)
	_, err := io.ReadFull(r, frame[4:])
	return frame, err
}

// forwardAnswer copies one answer frame from the server to the client
// with the descriptors that came with it, and closes this process's
// copies of them.
func forwardAnswer(from, to *net.UnixConn) error {
	var frame, oob []byte
	buf, ob := make([]byte, 64<<10), make([]byte, syscall.CmsgSpace(4*4))
	for len(frame) < 4 || len(frame) < 4+int(binary.LittleEndian.Uint32(frame)) {
		k, ok, _, _, err := from.ReadMsgUnix(buf, ob)
		if err != nil {
			return err
		}
		frame, oob = append(frame, buf[:k]...), append(oob, ob[:ok]...)
	}
	_, _, err := to.WriteMsgUnix(frame, oob, nil)
	if msgs, perr := syscall.ParseSocketControlMessage(oob); perr == nil {
		for _, m := range msgs {
			if fds, err := syscall.ParseUnixRights(&m); err == nil {
				for _, fd := range fds {
					syscall.Close(fd)
				}
			}
		}
	}
	return err
}

// TestShortCircuitOlderNodeAskedToFillOnce: a client of this version on
// the host of an older node, which knows neither filling memory reads
// (op 6) nor stats (op 7) on its short-circuit socket: the first cold
// page's filling read is refused as unknown and the client asks that node
// for no more, reading its cold pages over gRPC and still its memory and
// page files by short-circuit; every byte right.
func TestShortCircuitOlderNodeAskedToFillOnce(t *testing.T) {
	n := startSCNode(t, 3*testPageSize+12345, 64<<20)
	asked := n.olderShortCircuit(t, 6, 7)
	c := n.client(t, true)
	check(t, c, n.data) // cold: four pages, read sequentially, then in pieces
	if got := asked(6); got != 1 {
		t.Errorf("the older node was asked for %d filling reads; want 1, then none", got)
	}
	if got := asked(7); got != 1 {
		t.Errorf("the older node was asked for %d stats; want 1, then none", got)
	}
	if asked(2) == 0 || n.readRPCs.Load() == 0 {
		t.Errorf("memory reads %d, gRPC reads %d; want the node's memory still read by short-circuit and the cold pages over gRPC", asked(2), n.readRPCs.Load())
	}
}
