package cachenode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// filesUnder lists the regular files below dir/sub.
func filesUnder(t *testing.T, dir, sub string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

type packedFile struct {
	ref  FileRef
	data []byte
}

// putSmallFiles stores n one-page files of assorted lengths under prefix
// (none a multiple of the block size but one) and returns them.
func putSmallFiles(t *testing.T, s *Store, prefix string, n int) []packedFile {
	t.Helper()
	var out []packedFile
	for i := range n {
		size := 100 + i*3001%(testPage-200)
		if i == 3 {
			size = 5 * testBlock
		}
		data := randomBytes(uint64(100+i), size)
		ref := FileRef{Mount: "/m", Path: fmt.Sprintf("%s/%d", prefix, i), Version: "v1", Size: int64(size)}
		if err := s.Put(ref, 0, 0, data); err != nil {
			t.Fatal(err)
		}
		out = append(out, packedFile{ref, data})
	}
	return out
}

func readStored(t *testing.T, s *Store, ref FileRef, index int64) ([]byte, Tier, error) {
	t.Helper()
	p := make([]byte, s.PageLen(ref, index))
	n, tier, err := s.Read(ref, index, 0, p)
	return p[:n], tier, err
}

// Pages shorter than PackBelow share pack files instead of a data file
// each (a cold small-file fill spent most of its CPU creating them); a
// whole page of a larger file keeps its own file. Packed pages are read
// back from disk, verified, survive a restart, and an evicted one is
// gone after it, its blocks given back to the file system.
func TestStorePacksSmallPages(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 16 << 20, PageSize: testPage, BlockSize: testBlock, PackBelow: testPage}
	s := openTestStore(t, cfg)
	files := putSmallFiles(t, s, "small", 20)
	// A two-page file: page 0 is whole (its own file), page 1 short.
	big := randomBytes(7, testPage+10_000)
	bigRef := FileRef{Mount: "/m", Path: "big", Version: "v1", Size: int64(len(big))}
	for i, off := range []int64{0, testPage} {
		if err := s.Put(bigRef, int64(i), 0, big[off:min(off+testPage, int64(len(big)))]); err != nil {
			t.Fatal(err)
		}
	}
	pageFiles, packFiles := filesUnder(t, dir, pagesDir), filesUnder(t, dir, packsDir)
	if len(pageFiles) != 1 || !strings.HasSuffix(pageFiles[0], pageFileName(PageID{File: bigRef.ID(), Index: 0})+dataSuffix) {
		t.Fatalf("page files %v; want the big file's first page's alone", pageFiles)
	}
	if len(packFiles) != 1 {
		t.Fatalf("packs %v; want one", packFiles)
	}
	check := func(when string, fs []packedFile) {
		t.Helper()
		for _, f := range fs {
			got, tier, err := readStored(t, s, f.ref, 0)
			if err != nil || tier != TierDisk || !bytes.Equal(got, f.data) {
				t.Fatalf("%s: read of %s: %d bytes from %q, %v; want its %d bytes from disk", when, f.ref.Path, len(got), tier, err, len(f.data))
			}
		}
		got, _, err := readStored(t, s, bigRef, 1)
		if err != nil || !bytes.Equal(got, big[testPage:]) {
			t.Fatalf("%s: the big file's short page: %v", when, err)
		}
	}
	check("after the fills", files)
	if st := s.Stats(); st.Pages != 22 {
		t.Fatalf("%d pages; want 22", st.Pages)
	}
	used := s.Stats().DiskBytes

	// A restart serves them all from disk.
	s.Close()
	s = openTestStore(t, cfg)
	if st := s.Stats(); st.Pages != 22 || st.DiskBytes != used {
		t.Fatalf("after a restart: %d pages, %d disk bytes; want 22 and %d", st.Pages, st.DiskBytes, used)
	}
	check("after a restart", files)

	// Evict half: their slots are freed and their blocks read as zeros.
	f, dp, err := s.OpenDiskPage(files[1].ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if dp.Base == 0 || dp.Base%DirectAlign != 0 {
		t.Fatalf("second packed page starts at %d; want a later aligned offset", dp.Base)
	}
	evicted := func(pi PageInfo) bool {
		var i int
		fmt.Sscanf(pi.Ref.Path, "small/%d", &i)
		return strings.HasPrefix(pi.Ref.Path, "small/") && i%2 == 1
	}
	if n, _ := s.Evict(evicted); n != 10 {
		t.Fatalf("evicted %d pages; want 10", n)
	}
	held := make([]byte, len(files[1].data))
	if _, err := f.ReadAt(held, dp.Base); err != nil || !bytes.Equal(held, make([]byte, len(held))) {
		t.Fatalf("an evicted packed page's bytes read through a descriptor held before: %v, zeros %v; want zeros", err, bytes.Equal(held, make([]byte, len(held))))
	}
	var kept []packedFile
	for i, f := range files {
		if i%2 == 0 {
			kept = append(kept, f)
		}
	}
	s.Close()
	s = openTestStore(t, cfg)
	if st := s.Stats(); st.Pages != 12 {
		t.Fatalf("after evicting 10 and a restart: %d pages; want 12", st.Pages)
	}
	check("after evictions and a restart", kept)
	if _, _, err := readStored(t, s, files[1].ref, 0); !errors.Is(err, ErrMissing) {
		t.Fatalf("an evicted page after a restart: %v; want ErrMissing", err)
	}
}

// A packed page's grant is its pack with the page's offset in it (past
// the slot's header, so never 0): the
// blocks read there through the descriptor the socket hands out are the
// page's.
func TestShortCircuitGrantsPackedPages(t *testing.T) {
	const pageSize, blockSize = 256 << 10, 64 << 10
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 16 << 20, PageSize: pageSize, BlockSize: blockSize, PackBelow: pageSize})
	var refs []FileRef
	var datas [][]byte
	for i := range 3 {
		data := randomBytes(uint64(30+i), 70_000+i)
		ref := FileRef{Mount: "/lake/test", Path: fmt.Sprintf("d/f%d", i), Version: "v1", Size: int64(len(data))}
		if err := s.Put(ref, 0, 0, data); err != nil {
			t.Fatal(err)
		}
		refs, datas = append(refs, ref), append(datas, data)
	}
	_, c := serveShortCircuit(t, s, nil)
	for i, ref := range refs {
		f, dp, err := OpenShortCircuit(c, ShortCircuitRequest{Path: "/lake/test/" + ref.Path, Version: "v1", Size: ref.Size, PageSize: pageSize, Page: 0}, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if dp.Base <= 0 || dp.Base%DirectAlign != 0 || dp.Length != ref.Size || len(dp.Present) != 2 || !dp.Present[0] || !dp.Present[1] {
			t.Fatalf("grant of packed page %d: base %d, %+v", i, dp.Base, dp)
		}
		got := make([]byte, ref.Size)
		if _, err := f.ReadAt(got, dp.Base); err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("packed page %d read through its grant at %d: %v, equal %v", i, dp.Base, err, bytes.Equal(got, datas[i]))
		}
		for b := range 2 {
			if BlockCRC(got[b*blockSize:min((b+1)*blockSize, len(got))]) != dp.CRCs[b] {
				t.Fatalf("packed page %d block %d: checksum differs from the grant's", i, b)
			}
		}
		f.Close()
	}
}

// A corrupt block of a packed page is detected, dropped and never
// served; its neighbours in the pack are not touched.
func TestStorePackedPageCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, StoreConfig{Dir: dir, DiskBytes: 16 << 20, PageSize: testPage, BlockSize: testBlock, PackBelow: testPage})
	files := putSmallFiles(t, s, "c", 3)
	f, dp, err := s.OpenDiskPage(files[1].ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	flipByte(t, filepath.Join(dir, packsDir, fmt.Sprintf("%016x%s", 1, packSuffix)), dp.Base+10)
	if _, _, err := readStored(t, s, files[1].ref, 0); !errors.Is(err, ErrMissing) {
		t.Fatalf("read of the corrupt packed page: %v; want ErrMissing", err)
	}
	if st := s.Stats(); st.CorruptBlocks != 1 {
		t.Fatalf("%d corrupt blocks counted; want 1", st.CorruptBlocks)
	}
	for _, i := range []int{0, 2} {
		if got, _, err := readStored(t, s, files[i].ref, 0); err != nil || !bytes.Equal(got, files[i].data) {
			t.Fatalf("neighbour %d of the corrupt page: %v", i, err)
		}
	}
	// Written again, it reads right (a fill after the drop).
	if err := s.Put(files[1].ref, 0, 0, files[1].data); err != nil {
		t.Fatal(err)
	}
	if got, _, err := readStored(t, s, files[1].ref, 0); err != nil || !bytes.Equal(got, files[1].data) {
		t.Fatalf("the corrupt page written again: %v", err)
	}
}

// Packs roll over when full; a full pack whose pages are all dropped is
// removed. A header torn by a crash ends its pack's index there on the
// next open: the slots before it are served, the rest dropped and their
// space given back.
func TestStorePacksRollOverAndTornHeaders(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 16 << 20, PageSize: testPage, BlockSize: testBlock, PackBelow: testPage}
	s := openTestStore(t, cfg)
	s.packs.limit = 2 * testPage
	files := putSmallFiles(t, s, "r", 12)
	packs := filesUnder(t, dir, packsDir)
	if len(packs) < 3 {
		t.Fatalf("%d packs for 12 pages of %d bytes in all in packs of 2 pages; want 3 or more", len(packs), s.Stats().DiskBytes)
	}
	if n, _ := s.Evict(func(PageInfo) bool { return true }); n != 12 {
		t.Fatalf("evicted %d; want 12", n)
	}
	if left := filesUnder(t, dir, packsDir); len(left) != 1 {
		t.Fatalf("packs left after every page was dropped: %v; want the one still taking slots", left)
	}
	s.Close()

	// Three pages in a new pack; then the second's header is torn.
	s = openTestStore(t, cfg)
	files = putSmallFiles(t, s, "t", 3)
	f, dp, err := s.OpenDiskPage(files[1].ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	pack := f.Name()
	f.Close()
	s.Close()
	hdrStart := dp.Base - packHeaderLen(0) // the header is at least one block
	for hdrStart > 0 {
		h, err := readPackHeaderAt(pack, hdrStart)
		if err == nil && !h.free && hdrStart+h.size > dp.Base {
			break
		}
		hdrStart -= DirectAlign
	}
	flipByte(t, pack, hdrStart+5)
	s = openTestStore(t, cfg)
	// The space from the torn header on is given back (the pack's was
	// allocated whole when it was started). The file system may count
	// a block of its own for the file's extents.
	var st syscall.Stat_t
	if err := syscall.Stat(pack, &st); err != nil || st.Blocks*512 > hdrStart+DirectAlign {
		t.Fatalf("the pack holds %d bytes of space after its torn header at %d was read (%v); want those before it only", st.Blocks*512, hdrStart, err)
	}
	if got, _, err := readStored(t, s, files[0].ref, 0); err != nil || !bytes.Equal(got, files[0].data) {
		t.Fatalf("the page before the torn header: %v", err)
	}
	for _, i := range []int{1, 2} {
		if _, _, err := readStored(t, s, files[i].ref, 0); !errors.Is(err, ErrMissing) {
			t.Fatalf("page %d at or after the torn header: %v; want ErrMissing", i, err)
		}
	}
}

func readPackHeaderAt(path string, off int64) (packHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return packHeader{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return packHeader{}, err
	}
	return readPackHeader(f, off, st.Size())
}

// A cold small file filled into memory and a pack is written to disk
// with one direct write, header and blocks together, whatever its length
// (its tail padded within the slot), where blocks then header took two,
// and three when the length was not a multiple of DirectAlign. Counted
// by the kernel (/proc/self/io): the write-type system calls, less the Go
// runtime's 8-byte eventfd wakeups, told apart by the bytes written,
// which are the new slots' bytes and 8 a wakeup. The pages read back
// from disk after a restart.
func TestStorePacksAColdPageWithOneWrite(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{MemoryBytes: 64 << 20, Dir: dir, DiskBytes: 256 << 20, PackBelow: 1 << 20, Logger: quietLogger()}
	s := openTestStore(t, cfg)
	sizes := []int64{100 << 10, 100<<10 + 1000, 3000, 64 << 10}
	var refs []FileRef
	for i, size := range sizes {
		refs = append(refs, FileRef{Mount: "/lake/a", Path: fmt.Sprintf("small/%d", i), Version: "1", Size: size})
	}
	src := memSource{data: randomBytes(98, 200<<10)}
	c := newTestCache(t, s, src, CacheConfig{})
	// The first fill creates the pack; whether it writes directly is the
	// file system's say.
	p := make([]byte, 200<<10)
	first := FileRef{Mount: "/lake/a", Path: "small/first", Version: "1", Size: 8192}
	if _, _, err := c.ReadAt(context.Background(), first, p[:first.Size], 0, true); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if f, _, err := s.OpenDiskPage(first, 0); err == nil {
			f.Close() // written and listed
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first page not on disk after 10s")
		}
	}
	packEnd := func() (int64, bool) {
		s.packs.mu.Lock()
		defer s.packs.mu.Unlock()
		a := s.packs.active
		return a.end, a.direct != nil
	}
	end0, direct := packEnd()
	if !direct {
		t.Skipf("the file system of %s refuses direct writes: packs are written through the page cache", dir)
	}
	calls0, bytes0 := procIO(t)
	for _, ref := range refs {
		if _, fs, err := c.ReadAt(context.Background(), ref, p[:ref.Size], 0, true); err != nil || fs[0].Tier != TierLake {
			t.Fatalf("ReadAt %s: %v %+v", ref.Path, err, fs)
		}
	}
	c.Close() // the disk writes
	calls1, bytes1 := procIO(t)
	end1, _ := packEnd()
	slots := end1 - end0
	wakeups := (bytes1 - bytes0 - slots) / 8
	if (bytes1-bytes0-slots)%8 != 0 || calls1-calls0-wakeups != int64(len(refs)) {
		t.Errorf("%d write calls of %d bytes for %d cold small pages in %d bytes of slots; want one write a page, its slot whole, and 8-byte wakeups",
			calls1-calls0, bytes1-bytes0, len(refs), slots)
	}
	s.Close()
	s = openTestStore(t, StoreConfig{Dir: dir, DiskBytes: 256 << 20, PackBelow: 1 << 20, Logger: quietLogger()})
	for _, ref := range refs {
		got, tier, err := readStored(t, s, ref, 0)
		if err != nil || tier != TierDisk || !bytes.Equal(got, src.data[:ref.Size]) {
			t.Fatalf("after a restart, %s (%d bytes): %d bytes from %q, %v", ref.Path, ref.Size, len(got), tier, err)
		}
	}
}

// procIO is this process's count of write-type system calls so far, and
// the bytes they wrote (/proc/self/io's syscw and wchar).
func procIO(t *testing.T) (calls, written int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			calls, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			written, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return calls, written
}

// A node packs every page (DefaultPackBelow): the whole pages of a large
// file and a page filled a block at a time take slots, no page file is
// created, ReadPackSlots finds each page's bytes where the slot says,
// and a restart serves them all from disk, the partly filled page with
// just its blocks.
func TestStorePacksWholePages(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 16 << 20, PageSize: testPage, BlockSize: testBlock, PackBelow: DefaultPackBelow}
	s := openTestStore(t, cfg)
	big := randomBytes(8, 3*testPage+5000)
	bigRef := FileRef{Mount: "/m", Path: "big", Version: "v1", Size: int64(len(big))}
	for i := int64(0); i < 4; i++ {
		if err := s.Put(bigRef, i, 0, big[i*testPage:min((i+1)*testPage, int64(len(big)))]); err != nil {
			t.Fatal(err)
		}
	}
	// A page of another file filled a block at a time, out of order.
	part := randomBytes(9, 2*testPage)
	partRef := FileRef{Mount: "/m", Path: "part", Version: "v1", Size: int64(len(part))}
	for _, b := range []int64{5, 2} {
		off := testPage + b*testBlock
		if err := s.Put(partRef, 1, b*testBlock, part[off:off+testBlock]); err != nil {
			t.Fatal(err)
		}
	}
	if files := filesUnder(t, dir, pagesDir); len(files) != 0 {
		t.Fatalf("page files %v; want none, every page packed", files)
	}
	packFiles := filesUnder(t, dir, packsDir)
	found := map[string]PackedPage{}
	for _, p := range packFiles {
		pages, err := ReadPackSlots(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, pg := range pages {
			found[fmt.Sprintf("%s/%d", pg.File.Path, pg.Index)] = pg
			if pg.File.Path != "big" {
				continue
			}
			got := make([]byte, pg.Length)
			if _, err := f.ReadAt(got, pg.Data); err != nil || !bytes.Equal(got, big[pg.Index*testPage:pg.Index*testPage+pg.Length]) {
				t.Errorf("page %d of big at %d of %s: %v, right bytes %v", pg.Index, pg.Data, p, err, bytes.Equal(got, big[pg.Index*testPage:pg.Index*testPage+pg.Length]))
			}
		}
		f.Close()
	}
	if len(found) != 5 || found["big/3"].Length != 5000 || found["part/1"].Length != testPage {
		t.Fatalf("pages in packs: %v; want big's 4 (the last 5000 bytes) and part's page 1", found)
	}

	check := func(when string) {
		t.Helper()
		for i := int64(0); i < 4; i++ {
			got, tier, err := readStored(t, s, bigRef, i)
			if err != nil || tier != TierDisk || !bytes.Equal(got, big[i*testPage:min((i+1)*testPage, int64(len(big)))]) {
				t.Fatalf("%s: page %d of big: %d bytes from %q, %v", when, i, len(got), tier, err)
			}
		}
		for _, b := range []int64{2, 5} {
			got := make([]byte, testBlock)
			if _, _, err := s.Read(partRef, 1, b*testBlock, got); err != nil || !bytes.Equal(got, part[testPage+b*testBlock:testPage+(b+1)*testBlock]) {
				t.Fatalf("%s: block %d of part's page 1: %v", when, b, err)
			}
		}
		if _, _, err := s.Read(partRef, 1, 3*testBlock, make([]byte, testBlock)); !errors.Is(err, ErrMissing) {
			t.Fatalf("%s: a block of part's page 1 never filled: %v; want ErrMissing", when, err)
		}
	}
	check("after the fills")
	s.Close()
	s = openTestStore(t, cfg)
	if st := s.Stats(); st.Pages != 5 {
		t.Fatalf("after a restart: %d pages; want 5", st.Pages)
	}
	check("after a restart")
}

// packsOnDisk is the disk space the packs under dir take (allocated
// blocks, not their apparent sizes).
func packsOnDisk(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, p := range filesUnder(t, dir, packsDir) {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		n += st.Blocks * 512
	}
	return n
}

// diskPageBase is where page 0 of ref starts in its pack.
func diskPageBase(t *testing.T, s *Store, ref FileRef) int64 {
	t.Helper()
	f, dp, err := s.OpenDiskPage(ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dp.Base
}

// A pack where a few pages stay (a hot set read again and again) has its
// dropped slots taken by later pages: the packs, their disk space and
// their descriptors stay bounded by the tier, before and after a restart,
// and every page reads back right. Without reuse, 3,000 small pages with
// 2% of them hot left 62 packs and 20 MiB on disk for an 8 MiB tier,
// growing with every page.
func TestPacksStayBoundedWithAHotSet(t *testing.T) {
	dir := t.TempDir()
	const tier = 8 << 20
	cfg := StoreConfig{Dir: dir, DiskBytes: tier, PageSize: testPage, BlockSize: testBlock, PackBelow: DefaultPackBelow}
	s := openTestStore(t, cfg)
	const size = 20 << 10
	content := func(i int) []byte { return randomBytes(uint64(i), size) }
	ref := func(i int) FileRef {
		return FileRef{Mount: "/m", Path: fmt.Sprintf("f%d", i), Version: "v1", Size: size}
	}
	buf := make([]byte, size)
	var hot []int
	churn := func(s *Store, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := s.Put(ref(i), 0, 0, content(i)); err != nil {
				t.Fatal(err)
			}
			if i%50 == 0 {
				hot = append(hot, i)
			}
			for _, h := range hot {
				s.Read(ref(h), 0, 0, buf)
			}
		}
		eventually(t, "the disk tier evicted to its limit", func() bool { return s.Stats().DiskBytes <= tier })
	}
	limit := packLimit(tier)
	check := func(when string) {
		t.Helper()
		packFiles := filesUnder(t, dir, packsDir)
		onDisk := packsOnDisk(t, dir)
		t.Logf("%s: %d packs of %d KiB, %d KiB on disk for a tier of %d KiB", when, len(packFiles), limit>>10, onDisk>>10, tier>>10)
		// The tier's pages, their slots' headers (a block each, a fifth
		// of these small pages) and the active pack's unused space.
		if max := 2 * tier / limit; int64(len(packFiles)) > max {
			t.Errorf("%s: %d packs; want at most %d", when, len(packFiles), max)
		}
		if onDisk > 2*tier {
			t.Errorf("%s: %d KiB of packs on disk; want at most %d", when, onDisk>>10, 2*tier>>10)
		}
	}
	// The free slots it keeps to take again: counted right, and those of
	// removed packs at most half of them (swept past that).
	spares := func(s *Store) {
		t.Helper()
		ps := s.packs
		ps.mu.Lock()
		defer ps.mu.Unlock()
		var all, stale int
		for _, list := range ps.spare {
			for _, sl := range list {
				all++
				if sl.pack.removed {
					stale++
				}
			}
		}
		if all != ps.spareLen || stale != ps.spareStale || stale > all/2+1 {
			t.Errorf("%d spare slots (%d of removed packs) counted as %d (%d)", all, stale, ps.spareLen, ps.spareStale)
		}
	}
	churn(s, 0, 3000)
	check("after 3,000 pages")
	spares(s)
	s.Close()
	s = openTestStore(t, cfg)
	for _, h := range hot {
		if n, _, err := s.Read(ref(h), 0, 0, buf); err != nil || n != size || !bytes.Equal(buf, content(h)) {
			t.Fatalf("hot page %d after a restart: %d bytes, %v, or other bytes", h, n, err)
		}
	}
	churn(s, 3000, 4000)
	check("after a restart and 1,000 pages more")
	spares(s)
	for i := 3900; i < 4000; i++ {
		n, _, err := s.Read(ref(i), 0, 0, buf)
		if err == nil && (n != size || !bytes.Equal(buf, content(i))) {
			t.Fatalf("page %d reads back %d other bytes", i, n)
		}
	}
}

// A dropped page's slot taken by the next page of its size: a reader that
// still holds the pack's descriptor and the dropped page's checksums (a
// short-circuit grant) finds another page's bytes there, and not one of
// its blocks passes as the dropped page's.
func TestPackSlotTakenAgainFailsTheOldChecksums(t *testing.T) {
	cfg := StoreConfig{Dir: t.TempDir(), DiskBytes: 8 << 20, PageSize: testPage, BlockSize: testBlock, PackBelow: DefaultPackBelow}
	s := openTestStore(t, cfg)
	const size = 20 << 10
	oldRef := FileRef{Mount: "/m", Path: "old", Version: "v1", Size: size}
	newRef := FileRef{Mount: "/m", Path: "new", Version: "v1", Size: size}
	if err := s.Put(oldRef, 0, 0, randomBytes(1, size)); err != nil {
		t.Fatal(err)
	}
	f, held, err := s.OpenDiskPage(oldRef, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, _ := s.Evict(func(pi PageInfo) bool { return pi.Ref.Path == "old" }); n != 1 {
		t.Fatalf("evicted %d pages; want 1", n)
	}
	newData := randomBytes(2, size)
	if err := s.Put(newRef, 0, 0, newData); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().PackSlotsReused; n != 1 {
		t.Fatalf("%d pack slots counted as taken again; want 1", n)
	}
	if at := diskPageBase(t, s, newRef); at != held.Base {
		t.Fatalf("the new page is at %d, the dropped one was at %d: its slot was not taken again", at, held.Base)
	}
	got := make([]byte, size)
	if _, err := f.ReadAt(got, held.Base); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newData) {
		t.Fatal("the slot taken again does not hold the new page's bytes")
	}
	for b := int64(0); b*testBlock < size; b++ {
		if blockCRC(got[b*testBlock:(b+1)*testBlock]) == held.CRCs[b] {
			t.Fatalf("block %d of the new page passes the dropped page's checksum", b)
		}
	}
}

// The disk tier counts a packed page's slot whole, its header and padding
// with its blocks: a page of a 1 KiB file takes 8 KiB of disk, and a tier
// that counted only its 1 KiB held 8 times its limit on disk.
func TestDiskTierCountsPackSlots(t *testing.T) {
	dir := t.TempDir()
	const tier = 4 << 20
	s := openTestStore(t, StoreConfig{Dir: dir, DiskBytes: tier, PageSize: testPage, BlockSize: testBlock, PackBelow: DefaultPackBelow})
	const size = 1 << 10
	for i := range 5000 {
		ref := FileRef{Mount: "/m", Path: fmt.Sprintf("tiny/%d", i), Version: "v1", Size: size}
		if err := s.Put(ref, 0, 0, randomBytes(uint64(i), size)); err != nil {
			t.Fatal(err)
		}
	}
	// Evicted to its limit, each page counted as a header and a padded
	// block (once the evictor is done with its pass).
	var st StoreStats
	eventually(t, "the disk tier evicted to its limit, counting 8 KiB a page", func() bool {
		st = s.Stats()
		return st.DiskBytes <= tier && st.DiskBytes == int64(st.Pages)*(DirectAlign+DirectAlign)
	})
	onDisk := packsOnDisk(t, dir)
	t.Logf("%d pages of 1 KiB, the tier at %d KiB, %d KiB of packs on disk", st.Pages, st.DiskBytes>>10, onDisk>>10)
	// The tier's slots, the active pack's space allocated ahead and the
	// headers of slots free for reuse.
	if onDisk > 2*tier {
		t.Fatalf("%d KiB of packs on disk for a tier of %d KiB holding %d pages", onDisk>>10, tier>>10, st.Pages)
	}
	// A restart counts them the same (the evictor may have ended its
	// pass at Close: the count a page, not the pages, is compared).
	s.Close()
	s = openTestStore(t, StoreConfig{Dir: dir, DiskBytes: tier, PageSize: testPage, BlockSize: testBlock, PackBelow: DefaultPackBelow})
	if again := s.Stats(); again.Pages == 0 || again.DiskBytes != int64(again.Pages)*(DirectAlign+DirectAlign) {
		t.Fatalf("after a restart: %d pages and %d bytes; want 8 KiB a page", again.Pages, again.DiskBytes)
	}
}

// A page in a slot taken again, larger than it needs, is counted after a
// restart as when it was written: its header and its padded blocks.
func TestDiskTierCountsATakenSlotAsWritten(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 8 << 20, PageSize: testPage, BlockSize: testBlock, PackBelow: DefaultPackBelow}
	s := openTestStore(t, cfg)
	big := FileRef{Mount: "/m", Path: "big", Version: "v1", Size: 40 << 10}
	small := FileRef{Mount: "/m", Path: "small", Version: "v1", Size: 30 << 10}
	if err := s.Put(big, 0, 0, randomBytes(1, 40<<10)); err != nil {
		t.Fatal(err)
	}
	bigAt := diskPageBase(t, s, big)
	s.Evict(func(pi PageInfo) bool { return pi.Ref.Path == "big" })
	if err := s.Put(small, 0, 0, randomBytes(2, 30<<10)); err != nil {
		t.Fatal(err)
	}
	if smallAt := diskPageBase(t, s, small); smallAt != bigAt {
		t.Fatalf("the 30 KiB page is at %d, not in the dropped 40 KiB page's slot at %d", smallAt, bigAt)
	}
	used := s.Stats().DiskBytes
	if want := int64(DirectAlign + 32<<10); used != want {
		t.Fatalf("the tier counts %d bytes for a 30 KiB page; want %d", used, want)
	}
	s.Close()
	s = openTestStore(t, cfg)
	if got := s.Stats().DiskBytes; got != used {
		t.Fatalf("after a restart the tier counts %d bytes; want %d as before", got, used)
	}
}
