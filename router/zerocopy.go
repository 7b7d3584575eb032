package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/region"
)

// Zero-copy sends of short-circuited pages. A front end that writes a
// file's bytes to a socket (the S3 gateway) costs two copies per byte on
// the short-circuit path: pread from the page cache into its buffer, and
// the socket write from that buffer. Section instead hands out a
// descriptor of the granted page file positioned at the range, which
// Section.Send sends with sendfile (net/http does for an
// *io.LimitedReader over an *os.File), a piece at a time, each piece's
// blocks verified from a read-only mapping of the page file (the checksum
// reads the page cache where it is: no copy) just before the piece goes.
// Each piece is verified just before it is sent, not the range whole
// before any of it: the time between a block's check and its send is a
// sendfile call, and a range of many pages no longer waits for all of
// them to be checked before its first byte goes. (That the piece would
// still be in the CPU's caches when the client copies it, saving a read
// of memory, did not show: four warm GETs at once through the gateway,
// seven pairs of runs against the whole-range check on 2026-12-07, 0.91x
// to 1.13x, median 1.01x.) Section.Write, for receivers on this host,
// writes each piece from the mapping its check just read instead: one
// copy here, and a cheaper one for the receiver (see Send).
//
// Why the bytes verified are the bytes sent: both come from the same
// inode, the same range, through the same page cache. A block of a page
// file is written once and never rewritten with other bytes, a page file
// is never truncated, and a dropped page's file is unlinked, which leaves
// the inode and its blocks to the descriptors still open on it (see
// cachenode/shortcircuit.go). The descriptor Section returns is an open
// file description of its own, so the grant's LRU closing the grant's
// descriptor does not affect it. The one case a checksum after the send
// would catch and this does not is a disk that silently returns other
// bytes when a page evicted from the page cache between the check and the
// send (microseconds) is read again; the pread path would catch it.
// Write narrows that further: its bytes go out of the mapping the check
// has just read them through.

// sectionPiece is how many bytes of a section Send and Write check, then
// send, at a time (a multiple of every block size in use, so that no
// block is checked twice): a check and the send of what it checked are
// one sendfile or write call apart, and such a call carries many
// segments. A variable for tests.
var sectionPiece int64 = 1 << 20

// ErrSectionCheck is wrapped in Send's error when a piece failed its
// check: the bytes Send reports sent are right, and the caller reads the
// rest of the section otherwise (File.ReadAt, which the node serves after
// dropping the bad block).
var ErrSectionCheck = errors.New("a block of the section failed its checksum")

// Section is a byte range of a file, in a page file of a node on this
// host, to send with Send or Write (one of them, once).
type Section struct {
	// File is a read-only descriptor of its own, positioned at the
	// range's first byte. The caller closes it.
	File *os.File
	// Length is the range's length: read no more than this from File.
	Length int64

	at    int64                     // the range's offset in its page: pieces end at multiples of sectionPiece from the page's start
	check func(from, n int64) error // verifies [from, from+n) of the range; nil: nothing to verify
	// mapped, when set, verifies [from, from+n) of the range from a
	// mapping of its file and, when they pass and use is not nil, passes
	// use those bytes from the mapping. checked reports that they passed:
	// err is then use's.
	mapped func(from, n int64, use func([]byte) error) (checked bool, err error)
}

// NewSection is a Section of the n bytes of file from its current
// offset, whose pieces Send and Write pass to check (offsets from the
// section's start) before they send them; check nil sends them
// unchecked. For Readers other than File that hand out sections of bytes
// they vouch for.
func NewSection(file *os.File, n int64, check func(from, n int64) error) Section {
	return Section{File: file, Length: n, check: check}
}

// pieces calls send for each piece of the section in order, with its
// offset from the section's start and its length, until one fails; it
// returns the bytes send reported sent.
func (s Section) pieces(send func(from, k int64) (int64, error)) (int64, error) {
	var sent int64
	for sent < s.Length {
		k := min(s.Length, (s.at+sent)/sectionPiece*sectionPiece+sectionPiece-s.at) - sent
		n, err := send(sent, k)
		sent += n
		if err == nil && n != k {
			err = fmt.Errorf("sent %d of a piece's %d bytes: %w", n, k, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// checkPiece checks [from, from+k) of the section; its error wraps
// ErrSectionCheck.
func (s Section) checkPiece(from, k int64) error {
	if s.check == nil {
		return nil
	}
	if err := s.check(from, k); err != nil {
		return fmt.Errorf("%w: %v", ErrSectionCheck, err)
	}
	return nil
}

// Send sends the section's bytes to w (an http.ResponseWriter's
// ReadFrom sends an *os.File's with sendfile) a piece at a time, each
// piece checked just before it is sent. It returns how many bytes went;
// after a piece failed its check, the error wraps ErrSectionCheck and no
// byte of that piece or later has been sent.
//
// sendfile is for a receiver on another host: the network card reads the
// page cache, and no CPU copies the bytes on this one. A receiver on
// this host (loopback) pays for it instead: its copy out of a socket that
// sendfile filled with page cache pages costs it about twice what the
// same copy costs out of one written from memory (four streams on
// loopback, 2026-12-07: 0.79-0.80 CPU-s per GiB in the reader against
// 0.38-0.43, while the sender saved 0.2). Use Write for those.
func (s Section) Send(w io.ReaderFrom) (int64, error) {
	return s.pieces(func(from, k int64) (int64, error) {
		if err := s.checkPiece(from, k); err != nil {
			return 0, err
		}
		return w.ReadFrom(&io.LimitedReader{R: s.File, N: k})
	})
}

// Write writes the section's bytes to w with w.Write, a piece at a time,
// each piece checked just before it goes, and returns how many bytes
// went, with the errors Send has. A section of a node's page file
// (File.Section) writes each piece straight from the mapping its check
// read it in, so the bytes are in this CPU's caches and the one copy made
// here is the socket's own; the cheaper way to a receiver on this host
// (see Send). Another section reads each piece from File into a buffer
// first.
func (s Section) Write(w io.Writer) (int64, error) {
	if s.mapped != nil {
		return s.pieces(func(from, k int64) (int64, error) {
			var n int
			checked, err := s.mapped(from, k, func(b []byte) error {
				var err error
				n, err = w.Write(b)
				return err
			})
			if err != nil && !checked {
				return 0, fmt.Errorf("%w: %v", ErrSectionCheck, err)
			}
			return int64(n), err
		})
	}
	buf := make([]byte, min(s.Length, sectionPiece))
	pos, err := s.File.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	return s.pieces(func(from, k int64) (int64, error) {
		if err := s.checkPiece(from, k); err != nil {
			return 0, err
		}
		b := buf[:k]
		if _, err := s.File.ReadAt(b, pos+from); err != nil {
			return 0, err
		}
		n, err := w.Write(b)
		return int64(n), err
	})
}

// Section returns bytes [off, off+n) of f, all inside one page, as a
// Section whose blocks Send verifies against their checksums as it sends
// them. It reports false when the page is not short-circuited (its member
// is not on this host, the node's disk tier does not hold those blocks,
// another platform than Linux): the caller reads the range with ReadAt
// instead. Like ReadAt, it counts in sequential detection, so a
// sequential reader's readahead runs whichever way it reads.
func (f *File) Section(ctx context.Context, off, n int64) (Section, bool) {
	ps := f.c.cfg.PageSize
	if n <= 0 || off < 0 || off+n > f.entry.Size || off/ps != (off+n-1)/ps {
		return Section{}, false
	}
	if f.c.sc == nil {
		return Section{}, false
	}
	page := off / ps
	members := f.pageMembers(page)
	if len(members) == 0 {
		return Section{}, false
	}
	sec, ok := f.c.sc.section(ctx, f, members[0], page, off, n)
	if !ok {
		return Section{}, false
	}
	if f.sequential(off, off+n) {
		f.readAhead(off + n)
	}
	return sec, true
}

// section returns a section of a descriptor of its own of the page file
// of page, positioned at file offset off, through a short-circuit grant
// from member m, whose check verifies blocks from a mapping of the file.
// It reports false when the caller must read the bytes otherwise.
func (sc *shortCircuit) section(ctx context.Context, f *File, m region.Member, page, off, n int64) (Section, bool) {
	if sc == nil || !cachenode.ShortCircuitSupported || m.Socket == "" || m.Host != sc.host {
		return Section{}, false
	}
	ps := f.c.cfg.PageSize
	pageLen := min(ps, f.entry.Size-page*ps)
	pageOff := off - page*ps
	key := scKey{node: m.Addr, file: f.id, page: page}
	file, dp, ok := sc.grant(ctx, key, f, m, page, pageLen, pageOff, pageOff+n)
	if !ok {
		return Section{}, false // the ReadAt the caller falls back to counts it
	}
	own, err := reopen(file)
	if err == nil {
		if _, err = own.Seek(dp.Base+pageOff, io.SeekStart); err != nil {
			own.Close()
		}
	}
	if err != nil {
		// The grant was closed meanwhile (LRU, TTL), or /proc is missing.
		sc.log.Debug("short-circuit section: page file not reopened", "path", f.entry.Path, "page", page, "err", err)
		return Section{}, false
	}
	sc.sections.Add(1)
	mapped := func(from, k int64, use func([]byte) error) (bool, error) {
		checked := false
		var used func([]byte) error
		if use != nil {
			used = func(b []byte) error { checked = true; return use(b) }
		}
		err := sc.verify(key, file, own, dp, pageOff+from, pageOff+from+k, used)
		if err == nil || checked {
			return true, err
		}
		if errors.Is(err, errBlockCRC) {
			sc.corrupt.Add(1)
		}
		sc.log.Debug("short-circuit section failed its check, reading otherwise", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
		// As after a failed read: the grant goes, and the fallback
		// reads over gRPC, where the node drops a bad block.
		sc.drop(key, file)
		return false, err
	}
	check := func(from, k int64) error {
		_, err := mapped(from, k, nil)
		return err
	}
	return Section{File: own, Length: n, at: pageOff, check: check, mapped: mapped}, true
}
