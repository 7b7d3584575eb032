package router

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/lakemesh/lakemesh/cachenode"
	"github.com/lakemesh/lakemesh/region"
)

// Zero-copy sends of short-circuited pages. A front end that writes a
// file's bytes to a socket (the S3 gateway) costs two copies per byte on
// the short-circuit path: pread from the page cache into its buffer, and
// the socket write from that buffer. Section instead verifies the blocks
// of a range from a read-only mapping of the granted page file (the
// checksum reads the page cache where it is: no copy) and hands out a
// descriptor positioned at the range, which the caller sends with
// sendfile (net/http does for an *io.LimitedReader over an *os.File).
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
// send (milliseconds) is read again; the pread path would catch it.

// Section is a verified byte range of a file, in a page file of a node on
// this host, to send with sendfile.
type Section struct {
	// File is a read-only descriptor of its own, positioned at the
	// range's first byte. The caller closes it.
	File *os.File
	// Length is the range's length: read no more than this from File.
	Length int64
}

// Reader returns the section's bytes as an *io.LimitedReader over the
// *os.File, the shape net's sendfile recognizes.
func (s Section) Reader() *io.LimitedReader { return &io.LimitedReader{R: s.File, N: s.Length} }

// Section returns bytes [off, off+n) of f, all inside one page, as a
// Section, after verifying every block they touch against its checksum.
// It reports false, having verified nothing the caller may use, when the
// page is not short-circuited (its member is not on this host, the
// node's disk tier does not hold those blocks, a block fails its
// checksum, another platform than Linux): the caller reads the range with
// ReadAt instead. Like ReadAt, it counts in sequential detection, so a
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
	file, ok := f.c.sc.section(ctx, f, members[0], page, off, n)
	if !ok {
		return Section{}, false
	}
	if f.sequential(off, off+n) {
		f.readAhead(off + n)
	}
	return Section{File: file, Length: n}, true
}

// section returns a descriptor of its own of the page file of page,
// positioned at file offset off, once every block that bytes [off, off+n)
// touch has been verified from a mapping of it, through a short-circuit
// grant from member m. It reports false when the caller must read the
// bytes otherwise.
func (sc *shortCircuit) section(ctx context.Context, f *File, m region.Member, page, off, n int64) (*os.File, bool) {
	if sc == nil || !cachenode.ShortCircuitSupported || m.Socket == "" || m.Host != sc.host {
		return nil, false
	}
	ps := f.c.cfg.PageSize
	pageLen := min(ps, f.entry.Size-page*ps)
	pageOff := off - page*ps
	end := pageOff + n
	key := scKey{node: m.Addr, file: f.id, page: page}
	file, dp, ok := sc.grant(ctx, key, f, m, page, pageLen, pageOff, end)
	if !ok {
		return nil, false // the ReadAt the caller falls back to counts it
	}
	own, err := reopen(file)
	if err != nil {
		// The grant was closed meanwhile (LRU, TTL), or /proc is missing.
		sc.log.Debug("short-circuit section: page file not reopened", "path", f.entry.Path, "page", page, "err", err)
		return nil, false
	}
	err = sc.verify(key, file, own, dp, pageOff, end)
	if err == nil {
		_, err = own.Seek(dp.Base+pageOff, io.SeekStart)
	}
	if err != nil {
		own.Close()
		if errors.Is(err, errBlockCRC) {
			sc.corrupt.Add(1)
		}
		sc.log.Debug("short-circuit section failed, reading otherwise", "path", f.entry.Path, "page", page, "node", m.Addr, "err", err)
		// As after a failed read: the grant goes, and the fallback
		// reads over gRPC, where the node drops a bad block.
		sc.drop(key, file)
		return nil, false
	}
	sc.sections.Add(1)
	return own, true
}
