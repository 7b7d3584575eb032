package cachenode

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lakemesh/lakemesh/cachenode/nodepb"
	"github.com/lakemesh/lakemesh/region"
	"github.com/lakemesh/lakemesh/ufs"
)

const seedPage = 1 << 20

// seedRegion is a region of nodes over one file:// lake, each serving
// gRPC on loopback, that see each other as members.
type seedRegion struct {
	lake  ufs.FS
	nodes []*seedNode

	mu      sync.Mutex
	members []*nodepb.Member
}

type seedNode struct {
	*Node
	id    string
	addr  string
	store *Store
}

// newSeedRegion starts n nodes whose memory-only stores hold memory bytes
// in pages of seedPage; journal, when set, is given to the first node.
func newSeedRegion(t *testing.T, n int, memory int64, journal *Journal, log *slog.Logger) *seedRegion {
	t.Helper()
	fs, err := ufs.Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	lakes := NewLakes([]Lake{{Path: "/lake/a", FS: fs}})
	r := &seedRegion{lake: fs}
	for i := range n {
		id := string(rune('a'+i)) + "-node"
		store := openTestStore(t, StoreConfig{MemoryBytes: memory, PageSize: seedPage, BlockSize: 64 << 10})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := NodeConfig{ID: id, Region: "r", Addr: lis.Addr().String(), Lakes: lakes, Store: store,
			Cache: newTestCache(t, store, lakes, CacheConfig{}), Members: r.memberList, PageOwners: r.pageOwners, Logger: log}
		if i == 0 {
			cfg.Journal = journal
		}
		node := NewNode(cfg)
		srv := grpc.NewServer()
		nodepb.RegisterNodeServer(srv, node)
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		r.nodes = append(r.nodes, &seedNode{Node: node, id: id, addr: cfg.Addr, store: store})
		r.members = append(r.members, &nodepb.Member{Id: id, Region: "r", Addr: cfg.Addr})
	}
	return r
}

func (r *seedRegion) memberList() []*nodepb.Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*nodepb.Member(nil), r.members...)
}

// pageOwners places keys on the members as the node process does.
func (r *seedRegion) pageOwners(keys []string) []*nodepb.Member {
	var ms []region.Member
	for _, m := range r.memberList() {
		ms = append(ms, region.Member{ID: m.GetId(), Addr: m.GetAddr()})
	}
	placement := region.NewPlacement(ms)
	owners := make([]*nodepb.Member, len(keys))
	for i, k := range keys {
		if m, ok := placement.Owner(k); ok {
			owners[i] = &nodepb.Member{Id: m.ID, Addr: m.Addr}
		}
	}
	return owners
}

// owner is the node that owns page i of ref; nil for a member that is
// not one of r's nodes.
func (r *seedRegion) owner(t *testing.T, ref FileRef, i int64) *seedNode {
	t.Helper()
	var ms []region.Member
	for _, m := range r.memberList() {
		ms = append(ms, region.Member{ID: m.GetId(), Addr: m.GetAddr()})
	}
	o, _ := region.Owner(PageID{File: ref.ID(), Index: i}.Key(), ms)
	for _, n := range r.nodes {
		if n.id == o.ID {
			return n
		}
	}
	return nil
}

// holdsPage reports whether s holds page i of ref with exactly want's bytes.
func holdsPage(s *Store, ref FileRef, i int64, want []byte) bool {
	lo := i * s.PageSize()
	page := want[lo:min(lo+s.PageSize(), int64(len(want)))]
	got := make([]byte, len(page))
	n, _, err := s.Read(ref, i, 0, got)
	return err == nil && n == len(page) && bytes.Equal(got, page)
}

// Every page of a seeded file lands on its owner (by the readers'
// placement), checked against its bytes, and nowhere else.
func TestSeedStoresEachPageOnItsOwner(t *testing.T) {
	r := newSeedRegion(t, 3, 64<<20, nil, quietLogger())
	data := randomBytes(1, 12*seedPage+1234)
	ref := FileRef{Mount: "/lake/a", Path: "f.bin", Version: "v1", Size: int64(len(data))}
	r.nodes[0].seed(context.Background(), ref, bytes.NewReader(data), ref.Size)

	owners := map[string]int{}
	for i := int64(0); i < 13; i++ {
		o := r.owner(t, ref, i)
		owners[o.id]++
		for _, n := range r.nodes {
			if got := holdsPage(n.store, ref, i, data); got != (n == o) {
				t.Errorf("page %d: node %s holds it: %v; its owner is %s", i, n.id, got, o.id)
			}
		}
	}
	if len(owners) < 2 {
		t.Fatalf("the test needs pages owned by several nodes, got %v", owners)
	}
}

// A file larger than the cache's low watermark is seeded only as far as
// that, and that is logged; the cache keeps what it held.
func TestSeedStopsAtTheCacheLowWatermark(t *testing.T) {
	log, rec := newLogRecorder()
	r := newSeedRegion(t, 1, 8*seedPage, nil, log) // low watermark: 6.8 pages
	s := r.nodes[0].store
	old := FileRef{Mount: "/lake/a", Path: "old.bin", Version: "v1", Size: seedPage}
	oldData := randomBytes(2, seedPage)
	if err := s.Put(old, 0, 0, oldData); err != nil {
		t.Fatal(err)
	}
	if k := s.SetPinned(func(pi PageInfo) bool { return pi.Ref == old }, true); k != 1 {
		t.Fatalf("pinned %d pages, want 1", k)
	}

	data := randomBytes(3, 20*seedPage)
	ref := FileRef{Mount: "/lake/a", Path: "big.bin", Version: "v1", Size: int64(len(data))}
	r.nodes[0].seed(context.Background(), ref, bytes.NewReader(data), ref.Size)

	var stored int
	for i := int64(0); i < 20; i++ {
		if holdsPage(s, ref, i, data) {
			stored++
			if i >= 6 {
				t.Errorf("page %d is seeded, beyond the first 6 pages under the low watermark", i)
			}
		}
	}
	if stored == 0 {
		t.Error("no page of the file was seeded")
	}
	if !holdsPage(s, old, 0, oldData) {
		t.Error("seeding evicted a pinned page")
	}
	if st := s.Stats(); st.MemoryBytes > st.MemoryLimit {
		t.Errorf("memory tier holds %d bytes, limit %d", st.MemoryBytes, st.MemoryLimit)
	}
	if len(rec.find("file seeded only in part: it is larger than what the region's cache keeps of one file, or than what was kept of it")) != 1 {
		t.Error("seeding only part of the file was not logged")
	}
}

// A node refuses seeded pages that fail their checksum or go beyond its
// own limit for one file, and keeps the rest.
func TestSeedReceiverChecksAndCaps(t *testing.T) {
	r := newSeedRegion(t, 1, 8*seedPage, nil, quietLogger())
	cc, err := grpc.NewClient(r.nodes[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	data := randomBytes(4, 10*seedPage)
	ref := FileRef{Mount: "/lake/a", Path: "x.bin", Version: "v1", Size: int64(len(data))}
	stream, err := nodepb.NewNodeClient(cc).Seed(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 10; i++ {
		page := data[i*seedPage : (i+1)*seedPage]
		sum := blockCRC(page)
		if i == 1 {
			sum++ // damaged on its way
		}
		for off := int64(0); off < seedPage; off += 256 << 10 {
			msg := &nodepb.SeedChunk{Page: i, Offset: off, Data: page[off : off+256<<10]}
			if off == 0 {
				msg.Crc32C = sum
			}
			if i == 0 && off == 0 {
				msg.File = &nodepb.FileRef{Path: "/lake/a/x.bin", Version: "v1", Size: ref.Size}
			}
			if err := stream.Send(msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	// 6 pages fit under the low watermark (6.8 pages); page 1 is damaged.
	if reply.GetStored() != 5 || reply.GetSkipped() != 5 {
		t.Errorf("reply %v, want 5 stored, 5 skipped", reply)
	}
	s := r.nodes[0].store
	for i := int64(0); i < 10; i++ {
		if want := i < 6 && i != 1; holdsPage(s, ref, i, data) != want {
			t.Errorf("page %d held: %v, want %v", i, !want, want)
		}
	}

	// A journal version is never seeded.
	stream, _ = nodepb.NewNodeClient(cc).Seed(context.Background())
	stream.Send(&nodepb.SeedChunk{File: &nodepb.FileRef{Path: "/lake/a/x.bin", Version: "wb:n:1", Size: 10}, Data: []byte("0123456789")})
	if _, err := stream.CloseAndRecv(); err == nil {
		t.Error("a journal version was seeded")
	}
}

// An upload whose seeding fails (a member does not answer) still
// succeeds and retires its journal entry; the pages this node owns are
// seeded, and an upload answer without a version seeds nothing.
func TestUploadSucceedsWhenSeedingFails(t *testing.T) {
	log, rec := newLogRecorder()
	j, err := OpenJournal(t.TempDir(), "a-node", quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	r := newSeedRegion(t, 1, 64<<20, j, log)
	// Three members that do not answer and 9 extents: the chance that
	// the uploading node owns every page, and no seeding fails, is 4^-9.
	for _, id := range []string{"gone-1", "gone-2", "gone-3"} {
		r.members = append(r.members, &nodepb.Member{Id: id, Region: "r", Addr: "127.0.0.1:1"})
	}
	n := r.nodes[0]
	const pages = 9 * ExtentPages
	data := randomBytes(5, (pages-1)*seedPage+77)
	e, err := j.Append("/lake/a/ckpt.bin", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !j.claim(e.ID) {
		t.Fatal("journal entry not claimable")
	}
	entry, err := n.upload(context.Background(), e, "write-back")
	if err != nil {
		t.Fatalf("upload with a member that does not answer: %v", err)
	}
	if _, ok := j.Pending(e.Path); ok {
		t.Error("the uploaded entry is still pending")
	}
	rc, err := r.lake.ReadRange(context.Background(), "ckpt.bin", entry.GetVersion(), 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("the lake does not have the uploaded bytes")
	}
	if len(rec.find("pages not seeded on their owner; reads there fill them as usual")) == 0 {
		t.Error("the failed seeding was not logged")
	}
	ref := FileRef{Mount: "/lake/a", Path: "ckpt.bin", Version: entry.GetVersion(), Size: int64(len(data))}
	var mine int
	for i := int64(0); i < pages; i++ {
		if r.owner(t, ref, i) == n {
			mine++
			if !holdsPage(n.store, ref, i, data) {
				t.Errorf("page %d, owned by the uploading node, is not seeded", i)
			}
		}
	}
	t.Logf("%d of %d pages owned by the uploading node", mine, pages)

	// No version in the lake's answer: nothing is seeded.
	e2, err := j.Append("/lake/a/other.bin", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	before := n.store.Stats().Pages
	lake, rel, _ := n.cfg.Lakes.Resolve(e2.Path)
	n.seedJournaled(context.Background(), lake, rel, e2, &nodepb.Entry{Path: e2.Path, Size: e2.Size})
	if after := n.store.Stats().Pages; after != before {
		t.Errorf("seeding without a lake version stored %d pages", after-before)
	}
	if len(rec.find("file not seeded in the region: the lake's version after the upload is not known")) != 1 {
		t.Error("skipping a seed without a version was not logged")
	}
}

// A write-through to a lake homed in the node's region leaves the new
// version's pages on their owners; a write beyond the node's seeding
// buffer seeds only the pages it kept.
func TestWriteThroughSeedsTheRegion(t *testing.T) {
	r := newSeedRegion(t, 2, 64<<20, nil, quietLogger())
	cc, err := grpc.NewClient(r.nodes[0].addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	data := randomBytes(6, 9*seedPage+5)
	entry := writeFile(t, cc, "/lake/a/w.bin", data)
	ref := FileRef{Mount: "/lake/a", Path: "w.bin", Version: entry.GetVersion(), Size: entry.GetSize()}
	for i := int64(0); i < 10; i++ {
		if !holdsPage(r.owner(t, ref, i).store, ref, i, data) {
			t.Errorf("page %d is not on its owner after the write-through", i)
		}
	}

	// Room for 3 pages in the seeding buffer: pages 0-2 are seeded.
	r.nodes[0].seedBuf.Acquire(context.Background(), seedBufferBytes-3*seedPage)
	data = randomBytes(7, 9*seedPage)
	entry = writeFile(t, cc, "/lake/a/w2.bin", data)
	ref = FileRef{Mount: "/lake/a", Path: "w2.bin", Version: entry.GetVersion(), Size: entry.GetSize()}
	for i := int64(0); i < 9; i++ {
		if got := holdsPage(r.owner(t, ref, i).store, ref, i, data); got != (i < 3) {
			t.Errorf("page %d seeded: %v, want %v", i, got, i < 3)
		}
	}
	if !r.nodes[0].seedBuf.TryAcquire(3 * seedPage) {
		t.Error("the write did not give its seeding buffer back")
	}
}

func writeFile(t *testing.T, cc *grpc.ClientConn, p string, data []byte) *nodepb.Entry {
	t.Helper()
	w, err := nodepb.NewNodeClient(cc).Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	w.Send(&nodepb.WriteChunk{Path: p})
	for off := 0; off < len(data); off += 300 << 10 { // pieces that straddle pages
		w.Send(&nodepb.WriteChunk{Data: data[off:min(off+300<<10, len(data))]})
	}
	reply, err := w.CloseAndRecv()
	if err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	if !strings.HasSuffix(reply.GetEntry().GetPath(), p[len("/lake/a"):]) || reply.GetEntry().GetVersion() == "" {
		t.Fatalf("write %s answered %v", p, reply.GetEntry())
	}
	return reply.GetEntry()
}
