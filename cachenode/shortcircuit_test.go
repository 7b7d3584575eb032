//go:build linux

package cachenode

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// serveShortCircuit serves s's short-circuit socket for the lake
// /lake/test (with cache, if not nil, for memory reads to wait on) and
// returns the server and a connection to it; both close when the test
// ends.
func serveShortCircuit(t *testing.T, s *Store, cache *Cache) (*ShortCircuitServer, *net.UnixConn) {
	t.Helper()
	// Unix socket paths are short (108 bytes): not under t.TempDir().
	dir, err := os.MkdirTemp("", "lmsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := ShortCircuitSocket(filepath.Join(dir, "node.sock"))
	if filepath.Base(sock) != "node.fd.sock" {
		t.Fatalf("short-circuit socket of node.sock is %s", sock)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewShortCircuitServer(ShortCircuitConfig{Lakes: NewLakes([]Lake{{Path: "/lake/test"}}), Store: s, Cache: cache})
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return srv, nc.(*net.UnixConn)
}

// The short-circuit socket hands out a read-only descriptor of a page's
// data file with exactly the blocks the disk tier holds and their
// checksums, says "not on disk" for pages it does not hold, and refuses
// another page size.
func TestShortCircuitGrantsDiskBlocks(t *testing.T) {
	const pageSize, blockSize = 256 << 10, 64 << 10
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 16 << 20, MemoryBytes: 16 << 20, PageSize: pageSize, BlockSize: blockSize})
	data := randomBytes(3, 2*pageSize+1000)
	ref := FileRef{Mount: "/lake/test", Path: "d/f", Version: "v1", Size: int64(len(data))}
	// Page 0: blocks 1 and 2; page 2 (1000 bytes): whole; page 1: none.
	if err := s.Put(ref, 0, blockSize, data[blockSize:3*blockSize]); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ref, 2, 0, data[2*pageSize:]); err != nil {
		t.Fatal(err)
	}

	srv, c := serveShortCircuit(t, s, nil)
	ask := func(page, ps int64) (*os.File, DiskPage, error) {
		return OpenShortCircuit(c, ShortCircuitRequest{Path: "/lake/test/d/f", Version: "v1", Size: ref.Size, PageSize: ps, Page: page}, time.Now().Add(5*time.Second))
	}

	f, dp, err := ask(0, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, true, true, false}; dp.Length != pageSize || dp.BlockSize != blockSize || len(dp.Present) != 4 ||
		dp.Present[0] != want[0] || dp.Present[1] != want[1] || dp.Present[2] != want[2] || dp.Present[3] != want[3] {
		t.Fatalf("grant of page 0: %+v", dp)
	}
	blk := make([]byte, blockSize)
	for b := 1; b <= 2; b++ {
		if _, err := f.ReadAt(blk, int64(b)*blockSize); err != nil {
			t.Fatal(err)
		}
		if BlockCRC(blk) != dp.CRCs[b] || string(blk) != string(data[b*blockSize:(b+1)*blockSize]) {
			t.Fatalf("block %d read through the descriptor does not match", b)
		}
	}
	if _, err := f.WriteAt([]byte{1}, blockSize); err == nil {
		t.Fatal("the descriptor handed out is writable")
	}
	f.Close()

	f, dp, err = ask(2, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if dp.Length != 1000 || len(dp.Present) != 1 || !dp.Present[0] {
		t.Fatalf("grant of the short last page: %+v", dp)
	}
	f.Close()

	if _, _, err := ask(1, pageSize); !errors.Is(err, ErrMissing) {
		t.Fatalf("page not on disk: %v; want ErrMissing", err)
	}
	if _, _, err := ask(0, 2*pageSize); !errors.Is(err, ErrShortCircuitRefused) {
		t.Fatalf("another page size: %v; want a refusal", err)
	}
	if st := srv.Stats(); st.Grants != 2 || st.NotOnDisk != 1 || st.Errors != 1 {
		t.Fatalf("server stats %+v; want 2 grants, 1 not on disk, 1 error", st)
	}
}

// A memory read through the short-circuit socket copies a page's blocks
// out of the node's memory tier, whole or in part, verified; blocks not all
// in memory are ErrMissing; and the blocks of an answer stay the page's
// while the client copies, even if the node evicts the page and its
// buffer would otherwise be reused for another page.
func TestShortCircuitMemoryReads(t *testing.T) {
	const pageSize, blockSize = 256 << 10, 32 << 10
	s := openTestStore(t, StoreConfig{MemoryBytes: 16 << 20, PageSize: pageSize, BlockSize: blockSize})
	data := randomBytes(3, 3*pageSize)
	ref := FileRef{Mount: "/lake/test", Path: "d/f", Version: "v1", Size: int64(len(data))}
	put := func(ref FileRef, page int, bytes []byte) {
		t.Helper()
		buf := s.bufs.get(pageSize) // a recycled page buffer, as fills use
		copy(buf, bytes)
		if err := s.Put(ref, int64(page), 0, buf); err != nil {
			t.Fatal(err)
		}
	}
	put(ref, 0, data[:pageSize])
	put(ref, 1, data[pageSize:2*pageSize])
	// Page 2: the first block only.
	if err := s.Put(ref, 2, 0, data[2*pageSize:2*pageSize+blockSize]); err != nil {
		t.Fatal(err)
	}

	srv, c := serveShortCircuit(t, s, nil)
	req := func(page, off, end int64) ShortCircuitRequest {
		return ShortCircuitRequest{Path: "/lake/test/d/f", Version: "v1", Size: ref.Size, PageSize: pageSize, Page: page, Off: off, End: end}
	}
	read := func(page, off, end int64) ([]byte, error) {
		buf := make([]byte, end-off)
		_, err := ReadShortCircuitMemory(context.Background(), c, req(page, off, end), buf, time.Now().Add(5*time.Second))
		return buf, err
	}

	for _, r := range [][3]int64{{0, 0, pageSize}, {1, 100, 3*blockSize + 7}, {1, blockSize, 2 * blockSize}, {2, 5, blockSize}} {
		got, err := read(r[0], r[1], r[2])
		if err != nil {
			t.Fatalf("page %d [%d,%d): %v", r[0], r[1], r[2], err)
		}
		at := r[0]*pageSize + r[1]
		if !bytes.Equal(got, data[at:at+r[2]-r[1]]) {
			t.Fatalf("page %d [%d,%d): bytes differ", r[0], r[1], r[2])
		}
	}
	if _, err := read(2, 0, blockSize+1); !errors.Is(err, ErrMissing) || errors.Is(err, ErrNotHeld) {
		t.Fatalf("a block not in memory of a page held in part: %v; want ErrMissing, not ErrNotHeld", err)
	}
	none := req(0, 0, blockSize)
	none.Version = "v2"
	if _, err := ReadShortCircuitMemory(context.Background(), c, none, make([]byte, blockSize), time.Now().Add(5*time.Second)); !errors.Is(err, ErrMissing) || !errors.Is(err, ErrNotHeld) {
		t.Fatalf("a page the node does not hold: %v; want ErrMissing and ErrNotHeld", err)
	}
	if st := srv.Stats(); st.MemoryGrants != 4 || st.NotInMemory != 2 {
		t.Fatalf("server stats %+v; want 4 memory grants, 2 not in memory", st)
	}
	// A request the node does not know (a newer client's op) is refused
	// as unknown, which a client remembers; other refusals are not.
	ask := func(op uint16, r ShortCircuitRequest) error {
		t.Helper()
		if _, err := c.Write(encodeSCRequest(op, r)); err != nil {
			t.Fatal(err)
		}
		body, _, err := readSCFrame(c)
		if err != nil {
			t.Fatal(err)
		}
		_, err = decodeSCMemoryResponse(body, false)
		return err
	}
	if err := ask(99, req(0, 0, blockSize)); !errors.Is(err, ErrShortCircuitUnknownRequest) || !errors.Is(err, ErrShortCircuitRefused) {
		t.Fatalf("op 99: %v; want a refusal as unknown", err)
	}
	wrongSize := req(0, 0, blockSize)
	wrongSize.PageSize *= 2
	if err := ask(scOpMemory, wrongSize); !errors.Is(err, ErrShortCircuitRefused) || errors.Is(err, ErrShortCircuitUnknownRequest) {
		t.Fatalf("a memory read with another page size: %v; want a refusal, not as unknown", err)
	}

	// Ask for page 0, then evict it and give its buffer every chance to
	// be reused by another page before copying.
	if _, err := c.Write(encodeSCRequest(scOpMemory, req(0, 0, pageSize))); err != nil {
		t.Fatal(err)
	}
	body, _, err := readSCFrame(c)
	if err != nil {
		t.Fatal(err)
	}
	g, err := decodeSCMemoryResponse(body, false)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Evict(func(p PageInfo) bool { return p.ID.Index == 0 }); n != 1 {
		t.Fatalf("evicted %d pages; want 1", n)
	}
	other := FileRef{Mount: "/lake/test", Path: "d/g", Version: "v1", Size: 8 * pageSize}
	for i := range 8 {
		runtime.GC()
		runtime.GC()
		put(other, i, bytes.Repeat([]byte{byte(i + 1)}, pageSize))
	}
	buf := make([]byte, pageSize)
	if err := copyMemoryGrant(c, g, 0, buf); err != nil {
		t.Fatalf("copying the blocks of an evicted page still held for the client: %v", err)
	}
	if !bytes.Equal(buf, data[:pageSize]) {
		t.Fatal("an evicted page's blocks changed while the client held them")
	}

	// A memory block changed behind the store's back fails its checksum
	// in the client, and the connection still serves.
	e := s.lookup(PageID{File: ref.ID(), Index: 1})
	e.mem[2][10] ^= 0xff
	if _, err := read(1, blockSize, 3*blockSize); !errors.Is(err, ErrShortCircuitChecksum) {
		t.Fatalf("a corrupt memory block: %v; want ErrShortCircuitChecksum", err)
	}
	e.mem[2][10] ^= 0xff
	if got, err := read(1, 0, pageSize); err != nil || !bytes.Equal(got, data[pageSize:2*pageSize]) {
		t.Fatalf("read after a failed checksum: %v", err)
	}
}

// A memory read of a page whose fill is in flight (a readahead's) waits
// for it and copies the page from memory, saying it waited; a page nobody
// fills is "not held" at once, and the read starts no fill.
func TestShortCircuitMemoryReadWaitsForFill(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{})
	data := randomBytes(41, 2*testPage)
	ref := src.add("f", "1", data)
	cache := smallCache(t, src, CacheConfig{})
	_, c := serveShortCircuit(t, cache.Store(), cache)
	req := ShortCircuitRequest{Path: "/lake/test/f", Version: "1", Size: ref.Size, PageSize: testPage, Page: 0, Off: 0, End: testPage}
	deadline := time.Now().Add(5 * time.Second)

	buf := make([]byte, testPage)
	if _, err := ReadShortCircuitMemory(context.Background(), c, req, buf, deadline); !errors.Is(err, ErrNotHeld) || src.started.Load() != 0 {
		t.Fatalf("a page nobody fills: %v, %d fetches started; want ErrNotHeld and none", err, src.started.Load())
	}
	if !cache.Prefetch(ref, 0) {
		t.Fatal("prefetch not taken")
	}
	eventually(t, "the prefetch's fetch", func() bool { return src.started.Load() == 1 })
	type result struct {
		tier Tier
		err  error
	}
	got := make(chan result, 1)
	go func() {
		pf, err := ReadShortCircuitMemory(context.Background(), c, req, buf, deadline)
		got <- result{Tier(pf.GetTier()), err}
	}()
	time.Sleep(200 * time.Millisecond) // the read is at the node, waiting
	close(src.gate)
	r := <-got
	if r.err != nil || r.tier != TierWait {
		t.Fatalf("memory read of a page being filled: %s, %v; want it to wait", r.tier, r.err)
	}
	if !bytes.Equal(buf, data[:testPage]) {
		t.Fatal("bytes differ")
	}
	if src.started.Load() != 1 {
		t.Fatalf("%d fetches; the memory read started one", src.started.Load())
	}
}

// A refused lend leaves the connection serving: clients ask on pooled
// connections, and most writes are not journaled.
func TestShortCircuitRefusedLendKeepsTheConnection(t *testing.T) {
	const pageSize, blockSize = 256 << 10, 64 << 10
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 16 << 20, MemoryBytes: 16 << 20, PageSize: pageSize, BlockSize: blockSize})
	data := randomBytes(5, pageSize)
	ref := FileRef{Mount: "/lake/test", Path: "d/f", Version: "v1", Size: int64(len(data))}
	if err := s.Put(ref, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	_, c := serveShortCircuit(t, s, nil) // Writes unset: every lend is refused
	deadline := time.Now().Add(5 * time.Second)
	for range 3 {
		if f, err := LendJournalFile(c, "/lake/test/d/new", nil, deadline); !errors.Is(err, ErrNotLendable) {
			if f != nil {
				f.Close()
			}
			t.Fatalf("lend from a node that lends nothing: %v, want ErrNotLendable", err)
		}
		f, dp, err := OpenShortCircuit(c, ShortCircuitRequest{Path: "/lake/test/d/f", Version: "v1", Size: ref.Size, PageSize: pageSize}, deadline)
		if err != nil {
			t.Fatalf("a page asked on the connection after a refused lend: %v", err)
		}
		f.Close()
		if dp.Length != pageSize {
			t.Fatalf("grant of %d bytes, want %d", dp.Length, pageSize)
		}
	}
}

// A filling memory read (op 6) of a page the node holds none of fetches
// it once, as a gRPC Read would, and copies it from memory, reporting the
// fill's tier; a second one finds it in memory and fetches nothing. A
// fill that fails is refused with its error and leaves the connection
// serving.
func TestShortCircuitMemoryReadFills(t *testing.T) {
	src := newFakeSource()
	data := randomBytes(43, 2*testPage+1000)
	ref := src.add("f", "1", data)
	cache := smallCache(t, src, CacheConfig{})
	srv, c := serveShortCircuit(t, cache.Store(), cache)
	deadline := time.Now().Add(5 * time.Second)
	req := func(page, off, end int64) ShortCircuitRequest {
		return ShortCircuitRequest{Path: "/lake/test/f", Version: "1", Size: ref.Size, PageSize: testPage, Page: page, Off: off, End: end, Fill: true}
	}

	for i, r := range [][3]int64{{1, 100, testPage}, {1, 0, testPage}, {2, 0, 1000}} {
		buf := make([]byte, r[2]-r[1])
		pf, err := ReadShortCircuitMemory(context.Background(), c, req(r[0], r[1], r[2]), buf, deadline)
		if err != nil {
			t.Fatalf("filling read %d: %v", i, err)
		}
		at := r[0]*testPage + r[1]
		if !bytes.Equal(buf, data[at:at+r[2]-r[1]]) {
			t.Fatalf("filling read %d: bytes differ", i)
		}
		want := TierLake
		if i == 1 {
			want = TierMemory // the first read filled page 1
		}
		if Tier(pf.GetTier()) != want || pf.GetPage() != r[0] {
			t.Fatalf("filling read %d: %s of page %d; want %s of page %d", i, pf.GetTier(), pf.GetPage(), want, r[0])
		}
	}
	if got := src.started.Load(); got != 2 {
		t.Fatalf("%d fetches from the source; want one per cold page (2)", got)
	}
	if st := srv.Stats(); st.Fills != 2 || st.MemoryGrants != 3 {
		t.Fatalf("server stats %+v; want 3 memory grants, 2 of them fills", st)
	}
	if m := cache.Store().Stats().Misses; m != 2 {
		t.Fatalf("the store counted %d misses; want one per cold page read (2)", m)
	}

	// Without Fill, a page nobody holds is "not held" and nothing is
	// fetched.
	plain := req(0, 0, testPage)
	plain.Fill = false
	if _, err := ReadShortCircuitMemory(context.Background(), c, plain, make([]byte, testPage), deadline); !errors.Is(err, ErrNotHeld) || src.started.Load() != 2 {
		t.Fatalf("a plain memory read of a cold page: %v, %d fetches; want ErrNotHeld and no fetch", err, src.started.Load())
	}

	src.mu.Lock()
	src.fail = errors.New("lake unreachable")
	src.mu.Unlock()
	if _, err := ReadShortCircuitMemory(context.Background(), c, req(0, 0, testPage), make([]byte, testPage), deadline); !errors.Is(err, ErrShortCircuitRefused) || !strings.Contains(err.Error(), "lake unreachable") {
		t.Fatalf("a filling read whose fill fails: %v; want it refused with the fill's error", err)
	}
	buf := make([]byte, 1000)
	if pf, err := ReadShortCircuitMemory(context.Background(), c, req(2, 0, 1000), buf, deadline); err != nil || Tier(pf.GetTier()) != TierMemory || !bytes.Equal(buf, data[2*testPage:]) {
		t.Fatalf("a read on the connection after a refused fill: %s, %v", pf.GetTier(), err)
	}
}

// A filling memory read (op 6) of a page a readahead brought over a line
// and the memory tier holds reports the crossing, once; it is not a fill.
func TestShortCircuitMemoryReadReportsReadAhead(t *testing.T) {
	src := originSource{newFakeSource()}
	data := randomBytes(44, testPage)
	ref := src.add("f", "1", data)
	cache := smallCache(t, src, CacheConfig{})
	srv, c := serveShortCircuit(t, cache.Store(), cache)
	cache.Prefetch(ref, 0)
	eventually(t, "page 0 read ahead", func() bool { return len(cache.Store().Missing(ref, 0, 0, testPage)) == 0 })
	req := ShortCircuitRequest{Path: "/lake/test/f", Version: "1", Size: ref.Size, PageSize: testPage, Page: 0, Off: 0, End: testPage, Fill: true}
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, testPage)
	pf, err := ReadShortCircuitMemory(context.Background(), c, req, buf, deadline)
	if err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("memory read of a page read ahead: %v", err)
	}
	if Tier(pf.GetTier()) != TierMemory || !pf.GetAhead() || pf.GetCrossed() != testPage || pf.GetRegion() != "far" || pf.GetBytes() != testPage {
		t.Fatalf("report %v; want memory, read ahead from far, %d bytes crossed", pf, testPage)
	}
	if pf, err = ReadShortCircuitMemory(context.Background(), c, req, buf, deadline); err != nil || pf.GetRegion() != "" {
		t.Fatalf("second read: %v, report %v; want no crossing reported again", err, pf)
	}
	if st := srv.Stats(); st.Fills != 0 || st.MemoryGrants != 2 {
		t.Fatalf("server stats %+v; want 2 memory grants, no fill", st)
	}
}

// A filling read whose fill the memory tier did not keep (none here) is
// answered "not in memory" with the fill's report: the client reads the
// page file and reports where the bytes came from, over which line.
func TestShortCircuitFillNotKeptInMemoryReports(t *testing.T) {
	src := originSource{newFakeSource()}
	data := randomBytes(45, testPage)
	ref := src.add("f", "1", data)
	store := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 16 << 20, PageSize: testPage, BlockSize: testBlock})
	cache := newTestCache(t, store, src, CacheConfig{})
	_, c := serveShortCircuit(t, store, cache)
	req := ShortCircuitRequest{Path: "/lake/test/f", Version: "1", Size: ref.Size, PageSize: testPage, Page: 0, Off: 0, End: testPage, Fill: true}
	pf, err := ReadShortCircuitMemory(context.Background(), c, req, make([]byte, testPage), time.Now().Add(5*time.Second))
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("filling read with no memory tier: %v; want ErrMissing", err)
	}
	if Tier(pf.GetTier()) != TierRemote || pf.GetRegion() != "far" || pf.GetCrossed() != testPage {
		t.Fatalf("report %v; want the fill's: remote, from far, %d bytes crossed", pf, testPage)
	}
	f, _, err := OpenShortCircuit(c, req, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("the page file after the fill: %v", err)
	}
	f.Close()
}

// A filling read's fill wakes it before the memory tier has the bytes: the
// node waits for them and answers from memory, not "not in memory" (the
// client then asked for a page file not written yet, and read over gRPC).
func TestShortCircuitFillAnswersOnceTheMemoryTierHasIt(t *testing.T) {
	src := newFakeSource()
	data := randomBytes(46, testPage)
	ref := src.add("f", "1", data)
	store := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 16 << 20, MemoryBytes: 16 << 20, PageSize: testPage, BlockSize: testBlock})
	cache := newTestCache(t, store, src, CacheConfig{})
	srv, c := serveShortCircuit(t, store, cache)
	testHookBeforeStage = func() { time.Sleep(50 * time.Millisecond) }
	t.Cleanup(func() { testHookBeforeStage = nil })
	req := ShortCircuitRequest{Path: "/lake/test/f", Version: "1", Size: ref.Size, PageSize: testPage, Page: 0, Off: 0, End: testPage, Fill: true}
	buf := make([]byte, testPage)
	pf, err := ReadShortCircuitMemory(context.Background(), c, req, buf, time.Now().Add(5*time.Second))
	if err != nil || !bytes.Equal(buf, data) || Tier(pf.GetTier()) != TierLake {
		t.Fatalf("filling read with a slow memory tier: %v, %s; want the page from memory, filled from the lake", err, pf.GetTier())
	}
	if st := srv.Stats(); st.Fills != 1 || st.NotInMemory != 0 {
		t.Fatalf("server stats %+v; want one fill answered from memory", st)
	}
}
