package cachenode

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
)

// Seeding. Once a write reaches its lake, the file's version is the
// lake's new one, whose pages no node holds, although the region that
// wrote the file had every byte of it: without seeding, its readers would
// fetch the whole file again, over the line from the lake's home region
// or from the lake. So the node that wrote the file stores the new
// version's pages on their owners in its region, placed the way readers
// place them (rendezvous over the page key: (path, version, extent)), on
// itself directly and on the other members through the Seed call. The
// bytes come from the journal's data file (before Journal.Done retires
// it), or, for a write-through to a lake homed in this region, from the
// pages kept as they streamed to the lake (seedTee).
//
// Seeding is best effort: it never fails a write or an upload, and it
// never loses a journal entry; what goes wrong is logged and the reads
// fill the pages the usual way. It keeps to the page store's rules:
//
//   - Every page travels with its CRC-32C, checked before it is stored;
//     the journal's bytes are checked against the CRC-32C the journal
//     recorded when it acknowledged them; the store takes its block
//     checksums in Put as for any fill.
//   - Pages go in through Store.Put: in every tier, within the tiers'
//     limits, evicting by the watermarks and never a pinned page.
//   - A node seeds at most seedLimit bytes of one file (the largest tier's
//     low watermark): a larger file has only its first pages seeded, so
//     one write never pushes the whole cache out. The receiving node
//     applies its own limit again.
//   - A seed whose lake version is unknown (no version in the upload's
//     answer, a size that does not match) is skipped.

// seedTimeout bounds one file's seeding; what is not stored by then is
// filled by reads as usual.
const seedTimeout = time.Minute

// seedBufferBytes bounds the bytes all write-throughs of a node keep in
// memory at once for seeding; a write beyond it seeds only the pages it
// kept before.
const seedBufferBytes = 256 << 20

// seedParallel bounds the members one seeding sends pages to at once.
const seedParallel = 4

// seedLimit is the most bytes of one file a node seeds or takes: the low
// watermark of its largest tier.
func (n *Node) seedLimit() int64 {
	var limit int64
	for _, t := range []*tier{n.cfg.Store.mem, n.cfg.Store.disk} {
		if t != nil {
			limit = max(limit, t.low)
		}
	}
	return limit
}

// seedJournaled seeds the pages of an uploaded journal entry under the
// version its lake gave it (entry, the upload's answer).
func (n *Node) seedJournaled(ctx context.Context, lake Lake, rel string, e JournalEntry, entry *nodepb.Entry) {
	if n.cfg.Store == nil {
		return
	}
	if entry.GetVersion() == "" || entry.GetSize() != e.Size {
		n.log.Warn("file not seeded in the region: the lake's version after the upload is not known",
			"path", e.Path, "version", entry.GetVersion(), "size", entry.GetSize(), "written", e.Size)
		return
	}
	f, err := n.cfg.Journal.OpenData(e)
	if err != nil {
		n.log.Warn("file not seeded in the region: its journal data cannot be read", "path", e.Path, "err", err)
		return
	}
	defer f.Close()
	if sum, err := crcOf(io.NewSectionReader(f, 0, e.Size)); err != nil || sum != e.CRC32C {
		n.log.Warn("file not seeded in the region: its journal data does not match the checksum of the acknowledged write",
			"path", e.Path, "err", err)
		return
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: entry.GetVersion(), Size: e.Size}
	n.seed(ctx, ref, f, e.Size)
}

func crcOf(r io.Reader) (uint32, error) {
	h := crc32.New(castagnoli)
	_, err := io.Copy(h, r)
	return h.Sum32(), err
}

// seed stores the pages of ref that lie in its first avail bytes (read
// from src) on their owners in the region. It logs what it did and never
// fails.
func (n *Node) seed(ctx context.Context, ref FileRef, src io.ReaderAt, avail int64) {
	p := ref.Mount + "/" + ref.Path
	if _, journal := JournalNode(ref.Version); journal || ref.Version == "" {
		n.log.Warn("file not seeded in the region: no lake version", "path", p, "version", ref.Version)
		return
	}
	if ref.Size == 0 {
		return
	}
	start := time.Now()
	ps := n.cfg.Store.PageSize()
	limit := min(avail, ref.Size, n.seedLimit())
	pages := (ref.Size + ps - 1) / ps
	seeded := pages
	if limit < ref.Size {
		seeded = limit / ps
		n.log.Info("file seeded only in part: it is larger than what the region's cache keeps of one file, or than what was kept of it",
			"path", p, "bytes", ref.Size, "seeded_bytes", seeded*ps, "limit", n.seedLimit())
	}
	if seeded == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), seedTimeout)
	defer cancel()

	// Each page to its owner, as readers place it.
	id := ref.ID()
	keys := make([]string, seeded)
	for i := range seeded {
		keys[i] = PageID{File: id, Index: i}.Key()
	}
	var owners []*nodepb.Member
	if n.cfg.PageOwners != nil {
		owners = n.cfg.PageOwners(keys)
	}
	type owner struct{ id, addr string }
	byOwner := map[owner][]int64{}
	for i := range seeded {
		o := owner{id: n.cfg.ID} // no membership: this node serves every page
		if int(i) < len(owners) && owners[i] != nil {
			o = owner{id: owners[i].GetId(), addr: owners[i].GetAddr()}
		}
		byOwner[o] = append(byOwner[o], i)
	}

	var mu sync.Mutex
	stored, failed := int64(0), 0
	slots := make(chan struct{}, seedParallel)
	var wg sync.WaitGroup
	for owner, idx := range byOwner {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			var k int64
			var err error
			if owner.id == n.cfg.ID {
				k, err = n.seedLocal(ref, src, idx)
			} else {
				k, err = n.seedRemote(ctx, owner.addr, ref, src, idx)
			}
			mu.Lock()
			stored += k
			if err != nil {
				failed++
			}
			mu.Unlock()
			if err != nil {
				n.log.Warn("pages not seeded on their owner; reads there fill them as usual",
					"path", p, "version", ref.Version, "owner", owner.id, "pages", len(idx), "err", err)
			}
		}()
	}
	wg.Wait()
	n.log.Info("file seeded in the region", "path", p, "version", ref.Version, "pages", seeded,
		"stored", stored, "owners", len(byOwner), "failed_owners", failed, "took", time.Since(start))
}

// seedLocal stores pages of ref read from src in this node's store.
func (n *Node) seedLocal(ref FileRef, src io.ReaderAt, pages []int64) (int64, error) {
	store := n.cfg.Store
	ps := store.PageSize()
	var stored int64
	for _, i := range pages {
		length := store.PageLen(ref, i)
		if store.Missing(ref, i, 0, length) == nil {
			stored++ // a reader was faster
			continue
		}
		buf := store.bufs.get(length) // the store keeps it
		if err := readPage(src, buf, i*ps); err != nil {
			return stored, fmt.Errorf("read page %d: %w", i, err)
		}
		if err := store.Put(ref, i, 0, buf); err != nil {
			return stored, err
		}
		stored++
	}
	return stored, nil
}

// readPage fills buf from src at off; io.EOF with a full buf is no error.
func readPage(src io.ReaderAt, buf []byte, off int64) error {
	k, err := src.ReadAt(buf, off)
	if k == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// seedRemote sends pages of ref read from src to the node at addr.
func (n *Node) seedRemote(ctx context.Context, addr string, ref FileRef, src io.ReaderAt, pages []int64) (int64, error) {
	var cc grpc.ClientConnInterface
	if n.cfg.PeerConn != nil {
		c, err := n.cfg.PeerConn(addr)
		if err != nil {
			return 0, err
		}
		cc = c
	} else {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		cc = c
	}
	// Cancelling the stream, never closing it, abandons a seeding the node
	// should not keep.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := nodepb.NewNodeClient(cc).Seed(ctx)
	if err != nil {
		return 0, err
	}
	ps := n.cfg.Store.PageSize()
	buf := make([]byte, ps)
	first := &nodepb.SeedChunk{File: &nodepb.FileRef{Path: ref.Mount + "/" + ref.Path, Version: ref.Version, Size: ref.Size}}
	for _, i := range pages {
		page := buf[:n.cfg.Store.PageLen(ref, i)]
		if err := readPage(src, page, i*ps); err != nil {
			return 0, fmt.Errorf("read page %d: %w", i, err)
		}
		sum := crc32.Checksum(page, castagnoli)
		for off := int64(0); off < int64(len(page)); off += chunkSize {
			msg := &nodepb.SeedChunk{Page: i, Offset: off, Data: page[off:min(off+chunkSize, int64(len(page)))]}
			if off == 0 {
				msg.Crc32C = sum
			}
			if first != nil {
				msg.File, first = first.File, nil
			}
			if err := stream.Send(msg); err != nil {
				if _, rerr := stream.CloseAndRecv(); rerr != nil {
					err = rerr // the node's own error
				}
				return 0, FromStatus(err)
			}
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		return 0, FromStatus(err)
	}
	if reply.GetSkipped() > 0 {
		n.log.Info("a node kept only some of the pages seeded to it", "file", ref, "node", addr,
			"stored", reply.GetStored(), "skipped", reply.GetSkipped())
	}
	return reply.GetStored(), nil
}

// Seed stores the pages another node of the region sends after a write
// (see the comment at the top of this file).
func (n *Node) Seed(stream nodepb.Node_SeedServer) error {
	msg, err := stream.Recv()
	if err != nil {
		return err
	}
	f := msg.GetFile()
	lake, rel, err := n.cfg.Lakes.Resolve(f.GetPath())
	if err != nil {
		return ToStatus(err)
	}
	if _, journal := JournalNode(f.GetVersion()); journal || f.GetVersion() == "" {
		return status.Errorf(codes.InvalidArgument, "seed %s: version %q is not a lake version", f.GetPath(), f.GetVersion())
	}
	ref := FileRef{Mount: lake.Path, Path: rel, Version: f.GetVersion(), Size: f.GetSize()}
	store := n.cfg.Store
	room := n.seedLimit()
	var reply nodepb.SeedReply
	var page []byte // the page being received; nil while one is skipped
	var index, got int64 = -1, 0
	var sum uint32
	for {
		if len(msg.GetData()) > 0 {
			if msg.GetOffset() == 0 {
				index, got, sum = msg.GetPage(), 0, msg.GetCrc32C()
				length := store.PageLen(ref, index)
				if length == 0 {
					return status.Errorf(codes.InvalidArgument, "seed %s: page %d is past the end of the file", ref, index)
				}
				page = nil
				if length <= room {
					room -= length
					page = store.bufs.get(length) // the store keeps it
				} else {
					reply.Skipped++
				}
			} else if msg.GetPage() != index || msg.GetOffset() != got {
				return status.Errorf(codes.InvalidArgument, "seed %s: piece of page %d at %d out of order", ref, msg.GetPage(), msg.GetOffset())
			}
			if got+int64(len(msg.GetData())) > store.PageLen(ref, index) {
				return status.Errorf(codes.InvalidArgument, "seed %s: page %d is longer than the page", ref, index)
			}
			if page != nil {
				copy(page[got:], msg.GetData())
			}
			got += int64(len(msg.GetData()))
			if page != nil && got == int64(len(page)) {
				if n.storeSeeded(ref, index, page, sum) {
					reply.Stored++
				} else {
					reply.Skipped++
				}
				page = nil
			}
		}
		msg, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if reply.Skipped > 0 {
		n.log.Info("seeded pages not all kept", "file", ref, "stored", reply.Stored, "skipped", reply.Skipped)
	}
	return stream.SendAndClose(&reply)
}

// storeSeeded stores one seeded page if it matches its checksum.
func (n *Node) storeSeeded(ref FileRef, index int64, page []byte, sum uint32) bool {
	if crc32.Checksum(page, castagnoli) != sum {
		n.log.Warn("seeded page dropped: checksum mismatch", "file", ref, "page", index)
		return false
	}
	if err := n.cfg.Store.Put(ref, index, 0, page); err != nil {
		n.log.Info("seeded page not stored", "file", ref, "page", index, "err", err)
		return false
	}
	return true
}

// seedTee passes a write's bytes on to its lake and keeps them, page by
// page, to seed the new version once the lake has it. Pages are kept
// while the node's seeding buffer (Node.seedBuf) has room and the file is
// within seedLimit; after the first page that is not kept, none is.
type seedTee struct {
	r     io.Reader
	buf   *semaphore.Weighted
	ps    int64
	limit int64

	pages [][]byte
	held  int64 // bytes taken from buf
	total int64 // bytes read through
	full  bool  // stopped keeping
}

func (n *Node) newSeedTee(r io.Reader) *seedTee {
	return &seedTee{r: r, buf: n.seedBuf, ps: n.cfg.Store.PageSize(), limit: n.seedLimit()}
}

func (t *seedTee) Read(p []byte) (int, error) {
	k, err := t.r.Read(p)
	t.keep(p[:k], t.total)
	t.total += int64(k)
	return k, err
}

// keep keeps b, the bytes at off of the file.
func (t *seedTee) keep(b []byte, off int64) {
	for len(b) > 0 && !t.full {
		at := off % t.ps
		if at == 0 {
			if off+t.ps > t.limit || !t.buf.TryAcquire(t.ps) {
				t.full = true
				return
			}
			t.held += t.ps
			t.pages = append(t.pages, make([]byte, 0, t.ps))
		}
		last := &t.pages[len(t.pages)-1]
		k := copy((*last)[at:t.ps], b)
		*last = (*last)[:at+int64(k)]
		b, off = b[k:], off+int64(k)
	}
}

// kept is how many bytes from the start of the file the tee holds.
func (t *seedTee) kept() int64 {
	var n int64
	for _, pg := range t.pages {
		n += int64(len(pg))
	}
	return n
}

// ReadAt reads kept bytes.
func (t *seedTee) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for len(p) > 0 {
		i := off / t.ps
		if i >= int64(len(t.pages)) || off%t.ps >= int64(len(t.pages[i])) {
			return n, io.EOF
		}
		k := copy(p, t.pages[i][off%t.ps:])
		p, off, n = p[k:], off+int64(k), n+k
	}
	return n, nil
}

// release gives the kept pages' room back.
func (t *seedTee) release() {
	t.pages = nil
	if t.held > 0 {
		t.buf.Release(t.held)
		t.held = 0
	}
}
