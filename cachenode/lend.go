package cachenode

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/ufs"
)

// Short-circuit writes: a client on the node's host that writes a whole
// file journaled by this node (write-back, or a lake homed in another
// region) asks the short-circuit socket to lend it the journal's data file
// for the write. The node creates the file and hands over a read-write
// descriptor (SCM_RIGHTS); the client writes the file's bytes into it
// itself, out of order too, reads them back, truncates, and then commits
// the size on the same connection. The commit syncs the file, writes its
// record and answers as a Write of the same bytes would (the entry, with
// the region told). The bytes cross no socket and are copied once, where
// a Write has the client spool them, send them, and the node receive and
// write them again: the FUSE mount's write-back checkpoint spent most of
// its CPU in those copies.
//
// The connection stays open while the file is lent, and one that closes
// before the commit (the client gave up, or died) removes the file: it was
// never acknowledged. So does a node's restart (a data file without a
// record). After the commit the file is the journal's, and the client
// writes it no more: a change after the commit is a new file. If the
// commit fails (the node restarted, the file is gone from the journal),
// the client still holds the bytes through its descriptor and writes them
// again through gRPC, to this node or another.
//
// Trust: a process that can connect to the socket can write any path the
// node journals, as one that can reach node.sock's Write can.
//
// Wire format, on shortcircuit.go's framing:
//
//	request op 4 (lend): path, attrs as JSON (uint32 length + bytes each)
//	response status 0 (lent, one descriptor attached): no fields
//	response status 5 (not lendable, ErrNotLendable): message
//	request op 5 (commit): size int64, CRC-32C uint32, flags uint16
//	  (1: the CRC is known; otherwise the node reads the file to take it)
//	response status 0: path, size int64, mtime unix nanoseconds int64,
//	  version (the entry a Write answers)
//	status 2 (error message) for either.
const (
	scOpLend      = 4
	scOpCommit    = 5
	scNotLendable = 5
	// scLendMax bounds the files lent at once by one node: each holds a
	// connection of the socket's MaxConns (the rest are left to reads).
	scLendMax = 16
)

// ErrNotLendable is a node's answer to a lend it does not serve: the path
// is not journaled by it (write-through to a lake of this region), or it
// lends too many files already. The client spools and writes as before.
var ErrNotLendable = errors.New("the node does not lend a journal file for this write")

// LendJournal lends a journal data file for a new write of p (see
// above).
func (n *Node) LendJournal(p string, attrs ufs.Attrs) (*LentFile, error) {
	lake, _, err := n.writableLake(p)
	if err != nil {
		return nil, err
	}
	if err := checkAttrs(lake, attrs); err != nil {
		return nil, fmt.Errorf("write %s: %w", p, err)
	}
	if !n.journals(lake, p) || n.cfg.Journal == nil {
		return nil, fmt.Errorf("write %s: %w", p, ErrNotLendable)
	}
	return n.cfg.Journal.Lend(p, attrs)
}

// CommitLent commits a lent file (LentFile.Commit) and answers as Write
// does.
func (n *Node) CommitLent(ctx context.Context, l *LentFile, c LentCommit) (*nodepb.Entry, error) {
	start := time.Now()
	e, err := l.Commit(c)
	if err != nil {
		return nil, err
	}
	entry, err := n.journaled(ctx, e, n.writeBack(e.Path))
	if err == nil {
		n.log.Info("file written into a lent journal file", "path", e.Path, "bytes", e.Size, "took", time.Since(start))
	}
	return entry, err
}

// StartWriteback starts writing bytes [off, off+n) of f to disk without
// waiting (sync_file_range; nothing on other platforms): a client writing
// a lent file does, piece by piece, so the commit's sync has little left.
func StartWriteback(f *os.File, off, n int64) { startWriteback(f, off, n) }

// LentCommit is a commit request's fields.
type LentCommit struct {
	Size     int64
	CRC32C   uint32
	CRCKnown bool
}

func encodeLendRequest(p string, attrs ufs.Attrs) []byte {
	le := binary.LittleEndian
	a, _ := json.Marshal(attrs)
	b := make([]byte, 4, 4+8+8+len(p)+len(a))
	b = append(b, scMagic...)
	b = le.AppendUint16(b, scFormat)
	b = le.AppendUint16(b, scOpLend)
	b = appendSCString(b, p)
	b = appendSCString(b, string(a))
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

func decodeLendRequest(r *sidecarReader) (string, ufs.Attrs, error) {
	p, raw := r.str(), r.str()
	if r.err != nil || len(r.b) != 0 {
		return "", nil, errBadSCFrame
	}
	var attrs ufs.Attrs
	if err := json.Unmarshal([]byte(raw), &attrs); err != nil {
		return "", nil, fmt.Errorf("%w: attrs: %v", errBadSCFrame, err)
	}
	return p, attrs, nil
}

func encodeCommitRequest(c LentCommit) []byte {
	le := binary.LittleEndian
	b := make([]byte, 4, 4+8+8+4+2)
	b = append(b, scMagic...)
	b = le.AppendUint16(b, scFormat)
	b = le.AppendUint16(b, scOpCommit)
	b = le.AppendUint64(b, uint64(c.Size))
	b = le.AppendUint32(b, c.CRC32C)
	var flags uint16
	if c.CRCKnown {
		flags |= 1
	}
	b = le.AppendUint16(b, flags)
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

func decodeCommitRequest(body []byte) (LentCommit, error) {
	r, err := scHeader(body)
	if err != nil {
		return LentCommit{}, err
	}
	if op := r.u16(); op != scOpCommit {
		return LentCommit{}, fmt.Errorf("%w: op %d on a lent file", errBadSCFrame, op)
	}
	c := LentCommit{Size: r.i64(), CRC32C: r.u32()}
	c.CRCKnown = r.u16()&1 != 0
	if r.err != nil || len(r.b) != 0 || c.Size < 0 {
		return LentCommit{}, errBadSCFrame
	}
	return c, nil
}

func encodeCommitted(e *nodepb.Entry) []byte {
	le := binary.LittleEndian
	b := appendSCString(scResponse(scGranted, ""), e.GetPath())
	b = le.AppendUint64(b, uint64(e.GetSize()))
	b = le.AppendUint64(b, uint64(e.GetMtimeUnixNano()))
	b = appendSCString(b, e.GetVersion())
	le.PutUint32(b, uint32(len(b)-4))
	return b
}

// appendSCString appends s as a frame's string: uint32 length + bytes.
func appendSCString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// decodeLendStatus reads a lend or commit response's status: nil when
// granted, else the node's refusal (wrapping ErrNotLendable when it is
// one) or a malformed frame.
func decodeLendStatus(body []byte) (*sidecarReader, error) {
	r, err := scHeader(body)
	if err != nil {
		return nil, err
	}
	switch st := r.u16(); st {
	case scGranted:
		return r, nil
	case scNotLendable:
		return nil, fmt.Errorf("%w: %s", ErrNotLendable, r.str())
	case scError:
		return nil, scRefusal(r.str())
	default:
		return nil, fmt.Errorf("%w: status %d", errBadSCFrame, st)
	}
}

func decodeLent(body []byte) error {
	r, err := decodeLendStatus(body)
	if err == nil && len(r.b) != 0 {
		err = errBadSCFrame
	}
	return err
}

func decodeCommitted(body []byte) (*nodepb.Entry, error) {
	r, err := decodeLendStatus(body)
	if err != nil {
		return nil, err
	}
	e := &nodepb.Entry{Path: r.str(), Size: r.i64(), MtimeUnixNano: r.i64(), Version: r.str()}
	if r.err != nil || len(r.b) != 0 {
		return nil, errBadSCFrame
	}
	return e, nil
}
