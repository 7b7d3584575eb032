package cachenode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testPage  = 64 << 10
	testBlock = 4 << 10
)

func TestGeometryAtFileEnd(t *testing.T) {
	g := geometry{pageSize: testPage, blockSize: testBlock}
	cases := []struct {
		size, index   int64
		length        int64
		blocks        int
		lastBlockLen  int64
		rangeOff, end int64
		b0, b1        int
	}{
		{size: 3 * testPage, index: 2, length: testPage, blocks: 16, lastBlockLen: testBlock, rangeOff: 0, end: testPage, b0: 0, b1: 16},
		{size: 2*testPage + 5000, index: 2, length: 5000, blocks: 2, lastBlockLen: 5000 - testBlock, rangeOff: 4095, end: 4097, b0: 0, b1: 2},
		{size: 2*testPage + testBlock, index: 2, length: testBlock, blocks: 1, lastBlockLen: testBlock, rangeOff: 10, end: 20, b0: 0, b1: 1},
		{size: 1, index: 0, length: 1, blocks: 1, lastBlockLen: 1, rangeOff: 0, end: 1, b0: 0, b1: 1},
		{size: testPage - 1, index: 0, length: testPage - 1, blocks: 16, lastBlockLen: testBlock - 1, rangeOff: testPage - 2, end: testPage - 1, b0: 15, b1: 16},
		{size: testPage, index: 1, length: 0},
		{size: 0, index: 0, length: 0},
		{size: testPage, index: -1, length: 0},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("size=%d/page=%d", tc.size, tc.index)
		if got := g.pageLen(tc.size, tc.index); got != tc.length {
			t.Errorf("%s: pageLen = %d, want %d", name, got, tc.length)
		}
		if tc.length == 0 {
			continue
		}
		if got := g.blocks(tc.length); got != tc.blocks {
			t.Errorf("%s: blocks = %d, want %d", name, got, tc.blocks)
		}
		if got := g.blockLen(tc.length, tc.blocks-1); got != tc.lastBlockLen {
			t.Errorf("%s: last block length = %d, want %d", name, got, tc.lastBlockLen)
		}
		if b0, b1 := g.blockRange(tc.rangeOff, tc.end); b0 != tc.b0 || b1 != tc.b1 {
			t.Errorf("%s: blockRange(%d,%d) = [%d,%d), want [%d,%d)", name, tc.rangeOff, tc.end, b0, b1, tc.b0, tc.b1)
		}
	}
}

func TestColdBlockCRCIsBlockCRC(t *testing.T) {
	data := randomBytes(5, 3*DefaultBlockSize)
	for _, n := range []int{0, 1, 63, 64, 255, 256, 257, 4095, DefaultBlockSize - 1, DefaultBlockSize, 3 * DefaultBlockSize} {
		for _, at := range []int{0, 1, 17} {
			b := data[at : at+min(n, len(data)-at)]
			if got, want := coldBlockCRC(b), blockCRC(b); got != want {
				t.Errorf("%d bytes at %d: coldBlockCRC %08x, blockCRC %08x", len(b), at, got, want)
			}
		}
	}
}

func TestOpenStoreRejectsBadConfig(t *testing.T) {
	for _, cfg := range []StoreConfig{
		{},                 // no tier
		{Dir: t.TempDir()}, // disk without a limit
		{MemoryBytes: 1 << 20, PageSize: 1 << 20, BlockSize: 3000}, // block does not divide page
		{MemoryBytes: 1 << 20, HighWater: 0.5, LowWater: 0.9},      // low above high
	} {
		if s, err := OpenStore(cfg); err == nil {
			s.Close()
			t.Errorf("OpenStore(%+v) succeeded", cfg)
		}
	}
}

// tierConfigs are the tier combinations every round trip runs against.
func tierConfigs(t *testing.T) map[string]StoreConfig {
	return map[string]StoreConfig{
		"memory": {MemoryBytes: 64 << 20, PageSize: testPage, BlockSize: testBlock},
		"disk":   {Dir: t.TempDir(), DiskBytes: 64 << 20, PageSize: testPage, BlockSize: testBlock},
		"both":   {Dir: t.TempDir(), DiskBytes: 64 << 20, MemoryBytes: 64 << 20, PageSize: testPage, BlockSize: testBlock},
	}
}

func TestStoreRoundTrip(t *testing.T) {
	for name, cfg := range tierConfigs(t) {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t, cfg)
			// Neither a multiple of the page nor of the block size.
			data := randomBytes(1, 2*testPage+3*testBlock+123)
			ref := FileRef{Mount: "/lake/a", Path: "x/y.bin", Version: "v1", Size: int64(len(data))}
			if got := s.Missing(ref, 2, 0, testPage); len(got) != 1 || got[0] != (Span{0, 3*testBlock + 123}) {
				t.Fatalf("Missing of a cold last page = %v", got)
			}
			for i := int64(0); i < 3; i++ {
				lo := i * testPage
				page := data[lo:min(lo+testPage, int64(len(data)))]
				if err := s.Put(ref, i, 0, page); err != nil {
					t.Fatalf("Put page %d: %v", i, err)
				}
			}
			for _, rg := range []struct{ off, n int64 }{
				{0, 1}, {testBlock - 1, 2}, {100, testPage - 100}, {2*testPage + 3*testBlock, 123}, {2*testPage + 3*testBlock + 122, 1},
			} {
				index, off := rg.off/testPage, rg.off%testPage
				p := make([]byte, rg.n)
				n, tier, err := s.Read(ref, index, off, p)
				if err != nil || int64(n) != rg.n {
					t.Fatalf("Read(page %d, %d, %d) = %d, %v", index, off, rg.n, n, err)
				}
				if !bytes.Equal(p, data[rg.off:rg.off+rg.n]) {
					t.Fatalf("Read(page %d, %d, %d): wrong bytes", index, off, rg.n)
				}
				wantTier := TierMemory
				if name == "disk" {
					wantTier = TierDisk
				}
				if tier != wantTier {
					t.Errorf("tier = %s, want %s", tier, wantTier)
				}
			}
			// A read past the page end is clipped.
			p := make([]byte, 1000)
			if n, _, err := s.Read(ref, 2, 3*testBlock+100, p); err != nil || n != 23 {
				t.Fatalf("clipped read = %d, %v", n, err)
			}
			if got := s.Missing(ref, 2, 0, testPage); got != nil {
				t.Fatalf("Missing after fill = %v", got)
			}
			st := s.Stats()
			if st.Pages != 3 {
				t.Errorf("Stats.Pages = %d, want 3", st.Pages)
			}
			if cfg.MemoryBytes > 0 && st.MemoryBytes != int64(len(data)) {
				t.Errorf("Stats.MemoryBytes = %d, want %d", st.MemoryBytes, len(data))
			}
			if cfg.Dir != "" && st.DiskBytes != int64(len(data)) {
				t.Errorf("Stats.DiskBytes = %d, want %d", st.DiskBytes, len(data))
			}
		})
	}
}

func TestStorePutValidation(t *testing.T) {
	s := openTestStore(t, StoreConfig{MemoryBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock})
	ref := FileRef{Mount: "/m", Path: "f", Version: "1", Size: testPage + 5000}
	bad := []struct {
		index, off int64
		n          int
	}{
		{0, 1, testBlock},                        // unaligned offset
		{0, 0, testBlock + 1},                    // partial block inside a page
		{0, testPage - testBlock, 2 * testBlock}, // past the page end
		{1, testBlock, 905},                      // short last block of the wrong length
		{2, 0, testBlock},                        // page past the file end
	}
	for _, b := range bad {
		if err := s.Put(ref, b.index, b.off, make([]byte, b.n)); !errors.Is(err, errPageRange) {
			t.Errorf("Put(page %d, off %d, %d bytes) = %v, want errPageRange", b.index, b.off, b.n, err)
		}
	}
	if err := s.Put(ref, 1, testBlock, make([]byte, 5000-testBlock)); err != nil {
		t.Errorf("Put of the file's short last block: %v", err)
	}
	if err := s.Put(ref, 1, 0, make([]byte, testBlock)); err != nil {
		t.Errorf("Put of a whole block of the last page: %v", err)
	}
}

func TestStoreBlocksFillIndependently(t *testing.T) {
	for name, cfg := range tierConfigs(t) {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t, cfg)
			data := randomBytes(2, testPage)
			ref := FileRef{Mount: "/m", Path: "f", Version: "1", Size: testPage}
			if err := s.Put(ref, 0, 2*testBlock, data[2*testBlock:4*testBlock]); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ref, 0, 7*testBlock, data[7*testBlock:8*testBlock]); err != nil {
				t.Fatal(err)
			}
			want := []Span{{0, 2 * testBlock}, {4 * testBlock, 3 * testBlock}, {8 * testBlock, 8 * testBlock}}
			if got := s.Missing(ref, 0, 0, testPage); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Missing = %v, want %v", got, want)
			}
			if got := s.Missing(ref, 0, 2*testBlock+5, 10); got != nil {
				t.Fatalf("Missing of held bytes = %v", got)
			}
			p := make([]byte, 2*testBlock)
			if _, _, err := s.Read(ref, 0, 2*testBlock, p); err != nil || !bytes.Equal(p, data[2*testBlock:4*testBlock]) {
				t.Fatalf("Read of held blocks: %v", err)
			}
			if _, _, err := s.Read(ref, 0, 3*testBlock, p); !errors.Is(err, ErrMissing) {
				t.Fatalf("Read touching a missing block = %v, want ErrMissing", err)
			}
		})
	}
}

// pageFile returns the path of a page's data file in a disk store.
func pageFile(s *Store, ref FileRef, index int64) string {
	return s.dataPath(PageID{File: ref.ID(), Index: index})
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestStoreDropsCorruptDiskBlock(t *testing.T) {
	logger, logs := newLogRecorder()
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock, Logger: logger})
	data := randomBytes(3, testPage)
	ref := FileRef{Mount: "/m", Path: "f", Version: "1", Size: testPage}
	if err := s.Put(ref, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	flipByte(t, pageFile(s, ref, 0), 5*testBlock+17)

	p := make([]byte, 3*testBlock)
	n, _, err := s.Read(ref, 0, 4*testBlock, p)
	if !errors.Is(err, ErrMissing) || n != 0 {
		t.Fatalf("Read over a corrupt block = %d, %v; want 0, ErrMissing", n, err)
	}
	if !bytes.Equal(p[testBlock:2*testBlock], make([]byte, testBlock)) {
		t.Fatalf("bytes of the corrupt block were copied out")
	}
	if got := s.Stats().CorruptBlocks; got != 1 {
		t.Fatalf("CorruptBlocks = %d, want 1", got)
	}
	if got := s.Missing(ref, 0, 0, testPage); len(got) != 1 || got[0] != (Span{5 * testBlock, testBlock}) {
		t.Fatalf("Missing after drop = %v, want only block 5", got)
	}
	if got := s.Stats().DiskBytes; got != testPage-testBlock {
		t.Fatalf("DiskBytes after drop = %d", got)
	}
	warn := logs.find("corrupt block dropped")
	if len(warn) != 1 || !bytes.Contains([]byte(warn[0]), []byte("block=5 tier=disk")) {
		t.Fatalf("log = %q", warn)
	}
	// Neighbours are still served; the dropped block can be filled again.
	if _, _, err := s.Read(ref, 0, 4*testBlock, p[:testBlock]); err != nil {
		t.Fatalf("Read of a good neighbour: %v", err)
	}
	if err := s.Put(ref, 0, 5*testBlock, data[5*testBlock:6*testBlock]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(ref, 0, 4*testBlock, p); err != nil || !bytes.Equal(p, data[4*testBlock:7*testBlock]) {
		t.Fatalf("Read after refill: %v", err)
	}
}

func TestStoreDropsCorruptMemoryBlockFromBothTiers(t *testing.T) {
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 1 << 20, MemoryBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock})
	data := randomBytes(4, testPage)
	ref := FileRef{Mount: "/m", Path: "f", Version: "1", Size: testPage}
	if err := s.Put(ref, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	e := s.lookup(PageID{File: ref.ID(), Index: 0})
	e.mu.Lock()
	e.mem[3][100] ^= 1 // a bit flip in RAM
	e.mu.Unlock()
	p := make([]byte, 10)
	if _, _, err := s.Read(ref, 0, 3*testBlock, p); !errors.Is(err, ErrMissing) {
		t.Fatalf("Read of a corrupt memory block = %v, want ErrMissing", err)
	}
	if got := s.Missing(ref, 0, 0, testPage); len(got) != 1 || got[0] != (Span{3 * testBlock, testBlock}) {
		t.Fatalf("Missing = %v, want block 3 gone from both tiers", got)
	}
	st := s.Stats()
	if st.CorruptBlocks != 1 || st.MemoryBytes != testPage-testBlock || st.DiskBytes != testPage-testBlock {
		t.Fatalf("stats after drop: %+v", st)
	}
}

func TestStoreDiskHitPromotedToMemory(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 1 << 20, MemoryBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock}
	s := openTestStore(t, cfg)
	data := randomBytes(5, testPage)
	ref := FileRef{Mount: "/m", Path: "f", Version: "1", Size: testPage}
	if err := s.Put(ref, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, cfg) // memory is empty after a restart
	p := make([]byte, 2*testBlock)
	if _, tier, err := s.Read(ref, 0, testBlock, p); err != nil || tier != TierDisk {
		t.Fatalf("first Read = %s, %v; want disk", tier, err)
	}
	if _, tier, err := s.Read(ref, 0, testBlock, p); err != nil || tier != TierMemory || !bytes.Equal(p, data[testBlock:3*testBlock]) {
		t.Fatalf("second Read = %s, %v; want memory and the right bytes", tier, err)
	}
	if st := s.Stats(); st.MemoryBytes != 2*testBlock || st.DiskHits != 1 || st.MemoryHits != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestStoreRestartRebuildsIndex(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock,
		Classify: func(r FileRef) Class { return Class{Pin: r.Path == "pinned"} }}
	s := openTestStore(t, cfg)
	data := randomBytes(6, testPage+100)
	ref := FileRef{Mount: "/m", Path: "pinned", Version: "1", Size: int64(len(data))}
	if err := s.Put(ref, 0, 0, data[:testPage]); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ref, 1, 0, data[testPage:]); err != nil {
		t.Fatal(err)
	}
	other := FileRef{Mount: "/m", Path: "other", Version: "1", Size: testPage}
	if err := s.Put(other, 0, 2*testBlock, data[:testBlock]); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Debris a crash could leave: a garbled record (its data goes too),
	// data without a record; and what format 1 left: a sidecar, a
	// temporary file.
	garbled := s.dataPath(PageID{File: other.ID(), Index: 0})
	if f, err := os.OpenFile(garbled, os.O_WRONLY, 0); err != nil {
		t.Fatal(err)
	} else {
		f.WriteAt([]byte("LMPM garbage"), testPage+4)
		f.Close()
	}
	orphan := s.dataPath(PageID{File: FileRef{Path: "gone"}.ID(), Index: 3})
	oldSidecar := strings.TrimSuffix(s.dataPath(PageID{File: ref.ID(), Index: 0}), dataSuffix) + metaSuffix
	tmp := oldSidecar + tmpMarker + "123"
	for _, p := range []string{orphan, oldSidecar, tmp} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s = openTestStore(t, cfg)
	st := s.Stats()
	if st.Pages != 2 || st.DiskBytes != int64(len(data)) || st.PinnedPages != 2 {
		t.Fatalf("stats after reopen = %+v", st)
	}
	p := make([]byte, 100)
	if n, tier, err := s.Read(ref, 1, 0, p); err != nil || n != 100 || tier != TierDisk || !bytes.Equal(p, data[testPage:]) {
		t.Fatalf("Read after reopen = %d, %s, %v", n, tier, err)
	}
	for _, path := range []string{garbled, orphan, oldSidecar, tmp} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s survived the reopen (err %v)", filepath.Base(path), err)
		}
	}
	if got := s.Missing(other, 0, 0, testPage); len(got) != 1 || got[0].Len != testPage {
		t.Errorf("page with garbled record still indexed: Missing = %v", got)
	}

	// Another geometry cannot use these pages: they are removed.
	s.Close()
	cfg.BlockSize = 2 * testBlock
	s = openTestStore(t, cfg)
	if st := s.Stats(); st.Pages != 0 || st.DiskBytes != 0 {
		t.Fatalf("pages of another geometry kept: %+v", st)
	}
}

func TestStoreVersionsAreSeparatePages(t *testing.T) {
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 1 << 20, MemoryBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock})
	v1, v2 := randomBytes(7, testPage), randomBytes(8, testPage)
	r1 := FileRef{Mount: "/m", Path: "f", Version: "1", Size: testPage}
	r2 := r1
	r2.Version = "2"
	if err := s.Put(r1, 0, 0, v1); err != nil {
		t.Fatal(err)
	}
	if got := s.Missing(r2, 0, 0, testPage); len(got) != 1 {
		t.Fatalf("new version sees the old version's blocks: Missing = %v", got)
	}
	if _, _, err := s.Read(r2, 0, 0, make([]byte, 10)); !errors.Is(err, ErrMissing) {
		t.Fatalf("Read of the new version = %v, want ErrMissing", err)
	}
	if err := s.Put(r2, 0, 0, v2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref  FileRef
		want []byte
	}{{r1, v1}, {r2, v2}} {
		p := make([]byte, testPage)
		if _, _, err := s.Read(c.ref, 0, 0, p); err != nil || !bytes.Equal(p, c.want) {
			t.Fatalf("Read %s: %v or wrong bytes", c.ref, err)
		}
	}
	if st := s.Stats(); st.Pages != 2 {
		t.Fatalf("Pages = %d, want 2", st.Pages)
	}
}

func TestStorePinEvictAndPagesCommands(t *testing.T) {
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 1 << 20, MemoryBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock})
	data := randomBytes(9, testPage)
	refs := []FileRef{
		{Mount: "/m", Path: "a/1", Version: "1", Size: testPage},
		{Mount: "/m", Path: "a/2", Version: "1", Size: testPage},
		{Mount: "/m", Path: "b/1", Version: "1", Size: testPage},
	}
	for _, r := range refs {
		if err := s.Put(r, 0, 0, data); err != nil {
			t.Fatal(err)
		}
	}
	underA := func(pi PageInfo) bool { return pi.Ref.Path[0] == 'a' }
	if n := s.SetPinned(underA, true); n != 2 {
		t.Fatalf("SetPinned = %d, want 2", n)
	}
	if n := s.SetPinned(underA, true); n != 0 {
		t.Fatalf("SetPinned again = %d, want 0 changes", n)
	}
	if got := s.Pages(func(pi PageInfo) bool { return pi.Pinned }); len(got) != 2 {
		t.Fatalf("pinned pages = %d, want 2", len(got))
	}
	all := s.Pages(nil)
	if len(all) != 3 || all[0].MemoryBytes != testPage || all[0].DiskBytes != testPage || all[0].Length != testPage {
		t.Fatalf("Pages = %+v", all)
	}
	pages, freed := s.Evict(func(pi PageInfo) bool { return pi.Ref.Path == "a/1" || pi.Ref.Path == "b/1" })
	if pages != 2 || freed != 4*testPage {
		t.Fatalf("Evict = %d pages, %d bytes; want 2, %d", pages, freed, 4*testPage)
	}
	if _, err := os.Stat(pageFile(s, refs[0], 0)); !os.IsNotExist(err) {
		t.Fatalf("evicted page's data file remains: %v", err)
	}
	if st := s.Stats(); st.Pages != 1 || st.MemoryBytes != testPage || st.DiskBytes != testPage || st.PinnedPages != 1 {
		t.Fatalf("stats after Evict = %+v", st)
	}
}

// TestStorePageIsOneFile checks that a page on disk is one file, its
// record after its blocks: creating a second file per page cost a third
// of a cold small-file fill's CPU.
func TestStorePageIsOneFile(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, StoreConfig{Dir: dir, DiskBytes: 1 << 20, PageSize: testPage, BlockSize: testBlock})
	ref := FileRef{Mount: "/m", Path: "small", Version: "1", Size: 100}
	if err := s.Put(ref, 0, 0, randomBytes(9, 100)); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, pagesDir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.Base(p))
		}
		return nil
	})
	if len(files) != 1 || !strings.HasSuffix(files[0], dataSuffix) {
		t.Fatalf("files of one page: %v, want one %s file", files, dataSuffix)
	}
	m, _, err := s.readRecord(s.dataPath(PageID{File: ref.ID(), Index: 0}))
	if err != nil || m.ref != ref || !m.disk.has(0) {
		t.Fatalf("record = %+v, %v; want the page's, listing block 0", m, err)
	}
}
