package cachenode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/lakemesh/lakemesh/ufs"
)

const (
	mib = 1 << 20
	kib = 1 << 10
)

// smallCache is a memory-only cache of test-sized pages over src.
func smallCache(t *testing.T, src Source, cfg CacheConfig) *Cache {
	s := openTestStore(t, StoreConfig{MemoryBytes: 64 * mib, PageSize: testPage, BlockSize: testBlock})
	return newTestCache(t, s, src, cfg)
}

func TestCacheConcurrentReadersShareOneFetch(t *testing.T) {
	for _, sequential := range []bool{true, false} {
		t.Run(fmt.Sprintf("sequential=%v", sequential), func(t *testing.T) {
			src := newFakeSource()
			src.gate = make(chan struct{})
			data := randomBytes(10, 3*testPage)
			ref := src.add("f", "1", data)
			c := smallCache(t, src, CacheConfig{})

			// Every reader touches the same blocks of page 1 (and, when
			// sequential, fills the whole page).
			const readers = 16
			var wg sync.WaitGroup
			tiers := make(chan Tier, readers)
			for i := 0; i < readers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					off := int64(testPage + 2*testBlock + 100*i)
					p := make([]byte, 1000)
					n, fs, err := c.ReadAt(context.Background(), ref, p, off, sequential)
					if err != nil || n != len(p) || !bytes.Equal(p, data[off:off+int64(n)]) {
						t.Errorf("reader %d: %d, %v (or wrong bytes)", i, n, err)
						return
					}
					tiers <- fs[0].Tier
				}()
			}
			eventually(t, "15 readers waiting on one fetch", func() bool { return c.Stats().Waits == readers-1 })
			close(src.gate)
			wg.Wait()
			close(tiers)
			count := map[Tier]int{}
			for tr := range tiers {
				count[tr]++
			}
			want := int64(testBlock)
			if sequential {
				want = testPage
			}
			if src.calls.Load() != 1 || src.bytes.Load() != want {
				t.Fatalf("source: %d calls, %d bytes; want 1 call, %d bytes", src.calls.Load(), src.bytes.Load(), want)
			}
			if count[TierLake] != 1 || count[TierWait] != readers-1 {
				t.Fatalf("tiers reported: %v", count)
			}
		})
	}
}

// The production geometry: 4 MiB pages of 32 KiB blocks.
func defaultCache(t *testing.T, src Source) *Cache {
	s := openTestStore(t, StoreConfig{MemoryBytes: 256 * mib})
	return newTestCache(t, s, src, CacheConfig{})
}

func TestCacheRandomReadsFetchOnlyTouchedBlocks(t *testing.T) {
	src := newFakeSource()
	size := 10*mib + 12345 // last page 2 MiB + 12345; last block 12345 bytes
	data := randomBytes(11, size)
	ref := src.add("f", "1", data)
	c := defaultCache(t, src)
	const blk = DefaultBlockSize
	cases := []struct {
		name   string
		off    int64
		ranges []Span // fetches expected, absolute
	}{
		{"inside one block", 3*blk + 100, []Span{{3 * blk, blk}}},
		{"again: warm", 3*blk + 200, nil},
		{"straddling two blocks", 10*blk - 2*kib, []Span{{9 * blk, 2 * blk}}},
		{"straddling a held and a missing block", 4*blk - 2*kib, []Span{{4 * blk, blk}}},
		{"straddling two pages", 4*mib - 2*kib, []Span{{4*mib - blk, blk}, {4 * mib, blk}}},
		{"in the file's short last block", int64(size) - 4*kib, []Span{{int64(size) - 12345, 12345}}},
	}
	for _, tc := range cases {
		before := src.fetchCount()
		callsBefore, bytesBefore := src.calls.Load(), src.bytes.Load()
		p := make([]byte, 4*kib)
		n, fs, err := c.ReadAt(context.Background(), ref, p, tc.off, false)
		if err != nil || n != len(p) || !bytes.Equal(p, data[tc.off:tc.off+4*kib]) {
			t.Fatalf("%s: ReadAt = %d, %v (or wrong bytes)", tc.name, n, err)
		}
		got := src.fetchRanges(before)
		var wantBytes int64
		for _, r := range tc.ranges {
			wantBytes += r.Len
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.ranges) && !(len(got) == 0 && len(tc.ranges) == 0) {
			t.Errorf("%s: fetched %v, want %v", tc.name, got, tc.ranges)
		}
		if d := src.bytes.Load() - bytesBefore; d != wantBytes || src.calls.Load()-callsBefore != int64(len(tc.ranges)) {
			t.Errorf("%s: %d calls, %d bytes; want %d calls, %d bytes", tc.name, src.calls.Load()-callsBefore, d, len(tc.ranges), wantBytes)
		}
		var fetched int64
		for _, f := range fs {
			fetched += f.Fetched
			if f.Fetched > 0 && f.Tier != TierLake || f.Fetched == 0 && f.Tier != TierMemory {
				t.Errorf("%s: page %d reported tier %s with %d bytes fetched", tc.name, f.Page, f.Tier, f.Fetched)
			}
		}
		if fetched != wantBytes {
			t.Errorf("%s: Fetch reports %d bytes fetched, want %d", tc.name, fetched, wantBytes)
		}
	}
}

func TestCacheSequentialFillsWholePages(t *testing.T) {
	src := newFakeSource()
	size := 10*mib + 12345
	data := randomBytes(12, size)
	ref := src.add("f", "1", data)
	c := defaultCache(t, src)

	p := make([]byte, 4*kib)
	if _, fs, err := c.ReadAt(context.Background(), ref, p, 100, true); err != nil || fs[0].Tier != TierLake || fs[0].Fetched != 4*mib {
		t.Fatalf("first sequential read: %v, %+v", err, fs)
	}
	if got := src.fetchRanges(0); len(got) != 1 || got[0] != (Span{0, 4 * mib}) {
		t.Fatalf("fetched %v, want the whole page in one call", got)
	}
	// The rest of page 0 is warm; page 2 (short) comes in one exact call.
	for off := int64(0); off < 4*mib; off += 256 * kib {
		if _, fs, err := c.ReadAt(context.Background(), ref, make([]byte, 256*kib), off, true); err != nil || fs[0].Tier != TierMemory {
			t.Fatalf("warm read at %d: %v %+v", off, err, fs)
		}
	}
	if _, _, err := c.ReadAt(context.Background(), ref, p, 8*mib+5, true); err != nil {
		t.Fatal(err)
	}
	if got := src.fetchRanges(0); len(got) != 2 || got[1] != (Span{8 * mib, 2*mib + 12345}) {
		t.Fatalf("fetched %v, want page 2 exactly", got)
	}
	// A page with a block held already: the missing runs around it.
	if _, _, err := c.ReadAt(context.Background(), ref, p, 4*mib+5*DefaultBlockSize, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadAt(context.Background(), ref, p, 4*mib, true); err != nil {
		t.Fatal(err)
	}
	got := src.fetchRanges(3)
	want := []Span{{4 * mib, 5 * DefaultBlockSize}, {4*mib + 6*DefaultBlockSize, 4*mib - 6*DefaultBlockSize}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fetched %v, want %v", got, want)
	}
	if src.bytes.Load() != int64(size) {
		t.Fatalf("source sent %d bytes for a %d-byte file", src.bytes.Load(), size)
	}
	readAll(t, c, ref, data, 1*mib+3, true)
	if src.bytes.Load() != int64(size) {
		t.Fatalf("warm full read fetched again")
	}
}

func TestCacheMultiPageReadAndEOF(t *testing.T) {
	src := newFakeSource()
	data := randomBytes(13, 3*testPage+77)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	p := make([]byte, 3*testPage)
	n, fs, err := c.ReadAt(context.Background(), ref, p, 500, false)
	if !errors.Is(err, io.EOF) || n != len(data)-500 || !bytes.Equal(p[:n], data[500:]) {
		t.Fatalf("ReadAt past EOF = %d, %v", n, err)
	}
	if len(fs) != 4 || fs[0].Page != 0 || fs[3].Page != 3 || fs[3].Bytes != 77 || fs[0].Bytes != testPage-500 {
		t.Fatalf("fetches = %+v", fs)
	}
	if src.calls.Load() != 4 || src.bytes.Load() != int64(len(data)) {
		t.Fatalf("%d calls, %d bytes", src.calls.Load(), src.bytes.Load())
	}
	if n, _, err := c.ReadAt(context.Background(), ref, p, int64(len(data)), false); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt at EOF = %d, %v", n, err)
	}
	empty := src.add("empty", "1", nil)
	if n, _, err := c.ReadAt(context.Background(), empty, p, 0, true); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt of an empty file = %d, %v", n, err)
	}
}

func TestCacheRefetchesCorruptDiskBlock(t *testing.T) {
	src := newFakeSource()
	data := randomBytes(14, 2*testPage+999)
	ref := src.add("f", "1", data)
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 64 * mib, PageSize: testPage, BlockSize: testBlock})
	c := newTestCache(t, s, src, CacheConfig{})
	readAll(t, c, ref, data, testPage, true)
	calls, sent := src.calls.Load(), src.bytes.Load()
	// Fetched bytes are stored after the reads that wanted them return.
	eventually(t, "the file on disk", func() bool { return c.Holds(ref, 0, ref.Size) })

	flipByte(t, pageFile(s, ref, 1), 7*testBlock+1)
	readAll(t, c, ref, data, 10000, false)
	if d := src.calls.Load() - calls; d != 1 {
		t.Fatalf("%d refetches, want 1", d)
	}
	if d := src.bytes.Load() - sent; d != testBlock {
		t.Fatalf("refetched %d bytes, want one block (%d)", d, testBlock)
	}
	if got := s.Stats().CorruptBlocks; got != 1 {
		t.Fatalf("CorruptBlocks = %d", got)
	}
	readAll(t, c, ref, data, 3000, false)
	if src.calls.Load()-calls != 1 {
		t.Fatalf("refetched again after repair")
	}
}

func TestCacheRestartServesFromDiskWithoutSource(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: 64 * mib, MemoryBytes: 8 * mib, PageSize: testPage, BlockSize: testBlock}
	src := newFakeSource()
	data := randomBytes(15, 5*testPage+4321)
	ref := src.add("f", "1", data)
	cfg.Logger = quietLogger()
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(s, src, CacheConfig{Logger: quietLogger()})
	readAll(t, c, ref, data, 7777, false)
	c.Close()
	s.Close()

	src2 := newFakeSource()
	src2.setFail(errors.New("the lake must not be read after a restart"))
	s2 := openTestStore(t, cfg)
	c2 := newTestCache(t, s2, src2, CacheConfig{})
	p := make([]byte, len(data))
	n, fs, err := c2.ReadAt(context.Background(), ref, p, 0, true)
	if err != nil || n != len(data) || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt after restart = %d, %v", n, err)
	}
	for _, f := range fs {
		if f.Tier != TierDisk {
			t.Fatalf("page %d served from %s after restart, want disk", f.Page, f.Tier)
		}
	}
	if src2.started.Load() != 0 {
		t.Fatalf("%d Source calls after restart", src2.started.Load())
	}
}

func TestCacheVersions(t *testing.T) {
	src := newFakeSource()
	v1, v2 := randomBytes(16, testPage+10), randomBytes(17, testPage+10)
	r1, r2 := src.add("f", "1", v1), src.add("f", "2", v2)
	c := smallCache(t, src, CacheConfig{})
	readAll(t, c, r1, v1, 1000, false)
	readAll(t, c, r2, v2, 1000, false)
	readAll(t, c, r1, v1, 999, true)
	if src.bytes.Load() != int64(len(v1)+len(v2)) {
		t.Fatalf("source sent %d bytes", src.bytes.Load())
	}

	// A Source that finds the file changed fails the read with
	// ErrVersionChanged and stores nothing.
	r3 := src.add("g", "3", v1)
	src.setFail(fmt.Errorf("read g: %w", ufs.ErrVersionChanged))
	_, _, err := c.ReadAt(context.Background(), r3, make([]byte, 10), 0, true)
	if !errors.Is(err, ufs.ErrVersionChanged) {
		t.Fatalf("ReadAt of a changed file = %v, want ErrVersionChanged", err)
	}
	if got := c.Store().Missing(r3, 0, 0, testPage); len(got) != 1 || got[0].Len != testPage {
		t.Fatalf("stored bytes from a failed fetch: Missing = %v", got)
	}
}

func TestCacheFetchErrorReachesEveryWaiter(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{})
	data := randomBytes(18, testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	boom := errors.New("line down")
	src.setFail(boom)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.ReadAt(context.Background(), ref, make([]byte, 100), int64(i*10), true)
			errs <- err
		}()
	}
	eventually(t, "7 waiters", func() bool { return c.Stats().Waits == 7 })
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, boom) {
			t.Fatalf("waiter got %v, want the fetch's error", err)
		}
	}
	if src.started.Load() != 1 || c.Stats().FetchErrors != 1 {
		t.Fatalf("%d fetches started, want 1", src.started.Load())
	}
	if c.Store().Stats().Pages != 0 {
		t.Fatalf("a failed fetch stored something")
	}
	src.setFail(nil)
	readAll(t, c, ref, data, testPage, true)
}

func TestCacheShortFetchStoresNothing(t *testing.T) {
	src := newFakeSource()
	data := randomBytes(19, testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	src.setShort(3 * testBlock / 2)
	_, _, err := c.ReadAt(context.Background(), ref, make([]byte, 100), 0, true)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAt with a short fetch = %v, want io.ErrUnexpectedEOF", err)
	}
	if c.Store().Stats().Pages != 0 {
		t.Fatalf("a short fetch stored something")
	}
}

func TestCachePrefetchIsBounded(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{})
	data := randomBytes(20, 6*testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{MaxPrefetches: 2})
	var accepted []bool
	for i := int64(0); i < 5; i++ {
		accepted = append(accepted, c.Prefetch(ref, i))
	}
	if fmt.Sprint(accepted) != "[true true false false false]" {
		t.Fatalf("Prefetch accepted %v", accepted)
	}
	if st := c.Stats(); st.PrefetchDropped != 3 || st.Prefetches != 2 {
		t.Fatalf("stats %+v", st)
	}
	if c.Prefetch(ref, 99) {
		t.Fatalf("Prefetch past the end of the file accepted")
	}
	eventually(t, "two prefetch fetches", func() bool { return src.started.Load() == 2 })
	close(src.gate)
	eventually(t, "prefetched pages", func() bool {
		st := c.Store()
		return len(st.Missing(ref, 0, 0, testPage)) == 0 && len(st.Missing(ref, 1, 0, testPage)) == 0
	})
	if !c.Prefetch(ref, 0) || src.calls.Load() != 2 {
		t.Fatalf("Prefetch of a held page fetched")
	}
	p := make([]byte, 2*testPage)
	if _, fs, err := c.ReadAt(context.Background(), ref, p, 0, false); err != nil || fs[0].Tier != TierMemory || fs[1].Tier != TierMemory {
		t.Fatalf("read of prefetched pages: %v %+v", err, fs)
	}
	if src.calls.Load() != 2 || src.bytes.Load() != 2*testPage {
		t.Fatalf("%d calls, %d bytes", src.calls.Load(), src.bytes.Load())
	}
}

func TestCacheOwnerCancelDoesNotFailWaiters(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{})
	data := randomBytes(21, testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	ownerDone := make(chan error, 1)
	go func() {
		_, _, err := c.ReadAt(ctx, ref, make([]byte, 10), 0, true)
		ownerDone <- err
	}()
	eventually(t, "owner's fetch", func() bool { return src.started.Load() == 1 })
	waiterDone := make(chan error, 1)
	p := make([]byte, 100)
	go func() {
		_, _, err := c.ReadAt(context.Background(), ref, p, 1000, true)
		waiterDone <- err
	}()
	eventually(t, "waiter", func() bool { return c.Stats().Waits == 1 })
	cancel()
	if err := <-ownerDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("owner = %v, want context.Canceled", err)
	}
	close(src.gate)
	if err := <-waiterDone; err != nil || !bytes.Equal(p, data[1000:1100]) {
		t.Fatalf("waiter = %v", err)
	}
	if src.started.Load() != 1 {
		t.Fatalf("%d fetches", src.started.Load())
	}
}

func TestCacheLoneCallerCancelStopsFetch(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{}) // never opened
	ref := src.add("f", "1", randomBytes(22, testPage))
	c := smallCache(t, src, CacheConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadAt(ctx, ref, make([]byte, 10), 0, true)
		done <- err
	}()
	eventually(t, "fetch", func() bool { return src.started.Load() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAt = %v", err)
	}
	// The fetch nobody waits for is cancelled, frees its slot and is not
	// shared with the next caller.
	eventually(t, "fetch cancelled", func() bool { return c.Stats().FetchErrors == 1 })
}

func TestCacheCloseStopsBackgroundFills(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{}) // never opened
	ref := src.add("f", "1", randomBytes(23, 2*testPage))
	c := smallCache(t, src, CacheConfig{})
	if !c.Prefetch(ref, 0) {
		t.Fatal("Prefetch refused")
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadAt(context.Background(), ref, make([]byte, 10), testPage, true)
		done <- err
	}()
	eventually(t, "two fetches", func() bool { return src.started.Load() == 2 })
	c.Close()
	if err := <-done; err == nil {
		t.Fatalf("ReadAt survived Close")
	}
	if _, _, err := c.ReadAt(context.Background(), ref, make([]byte, 10), 0, true); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("ReadAt after Close = %v", err)
	}
	if c.Prefetch(ref, 1) {
		t.Fatalf("Prefetch after Close accepted")
	}
}

func TestCacheServesWhatTheStoreCannotKeep(t *testing.T) {
	src := newFakeSource()
	data := randomBytes(24, testPage)
	ref := src.add("f", "1", data)
	// A memory tier smaller than one page: sequential fills cannot be kept.
	s := openTestStore(t, StoreConfig{MemoryBytes: 2 * testBlock, PageSize: testPage, BlockSize: testBlock})
	c := newTestCache(t, s, src, CacheConfig{})
	p := make([]byte, testPage)
	if n, _, err := c.ReadAt(context.Background(), ref, p, 0, true); err != nil || n != testPage || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	// Counted once the fetch has tried to store, after the read returned.
	eventually(t, "one store error", func() bool { return c.Stats().StoreErrors == 1 })
}

// Many readers, random and sequential, over files larger than the memory
// tier: eviction churns under them, and every byte read is right.
func TestCacheStress(t *testing.T) {
	src := newFakeSource()
	files := make([][]byte, 4)
	refs := make([]FileRef, 4)
	for i := range files {
		files[i] = randomBytes(uint64(30+i), 6*testPage+i*1111)
		refs[i] = src.add(fmt.Sprintf("f%d", i), "1", files[i])
	}
	s := openTestStore(t, StoreConfig{MemoryBytes: 4 * testPage, Dir: t.TempDir(), DiskBytes: 8 * testPage,
		PageSize: testPage, BlockSize: testBlock})
	c := newTestCache(t, s, src, CacheConfig{MaxConcurrentFetches: 4})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := 0; i < 150; i++ {
				f := r.IntN(len(files))
				size := len(files[f])
				off := r.IntN(size)
				n := 1 + r.IntN(min(size-off, 3*testBlock+500))
				p := make([]byte, n)
				if i%10 == 0 {
					c.Prefetch(refs[f], int64(off/testPage)+1)
				}
				k, _, err := c.ReadAt(context.Background(), refs[f], p, int64(off), g%2 == 0)
				if err != nil || k != n || !bytes.Equal(p, files[f][off:off+n]) {
					t.Errorf("ReadAt %s [%d,+%d) = %d, %v (or wrong bytes)", refs[f].Path, off, n, k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.MemoryBytes > st.MemoryLimit || st.DiskBytes > st.DiskLimit {
		t.Fatalf("over limit: %+v", st)
	}
	t.Logf("store %+v; cache %+v", st, c.Stats())
}

// committingSource hands out readers whose Commit (called once the store
// has the fetched bytes) waits for gate: a store write that takes long.
type committingSource struct {
	*fakeSource
	gate      chan struct{}
	committed atomic.Int64
}

type committingReader struct {
	io.ReadCloser
	s *committingSource
}

func (r committingReader) Commit(stored bool) {
	<-r.s.gate
	r.s.committed.Add(1)
}

func (s *committingSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	rc, err := s.fakeSource.Fetch(ctx, ref, off, n)
	if err != nil {
		return nil, err
	}
	return committingReader{ReadCloser: rc, s: s}, nil
}

// A cold read returns once its bytes are fetched, not once they are
// stored (a page's files created and written on the disk tier): readers
// copy from the fetch. Until the store has them the fetch stays in
// flight, so a reader meanwhile waits on it instead of fetching again.
func TestCacheReadDoesNotWaitForStore(t *testing.T) {
	src := &committingSource{fakeSource: newFakeSource(), gate: make(chan struct{})}
	data := randomBytes(31, 2*testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	read := func() []Fetch {
		t.Helper()
		p := make([]byte, testPage)
		done := make(chan error, 1)
		var fs []Fetch
		go func() {
			n, f, err := c.ReadAt(context.Background(), ref, p, 0, true)
			if err == nil && (n != len(p) || !bytes.Equal(p, data[:n])) {
				err = fmt.Errorf("read %d bytes, or wrong bytes", n)
			}
			fs = f
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			close(src.gate)
			t.Fatal("a cold read waited for its bytes to be stored")
		}
		return fs
	}
	if fs := read(); fs[0].Tier != TierLake {
		t.Fatalf("first read: tier %s, want %s", fs[0].Tier, TierLake)
	}
	if fs := read(); fs[0].Tier != TierWait && fs[0].Tier != TierMemory {
		t.Fatalf("read while the fetch is being stored: tier %s, want %s or %s", fs[0].Tier, TierWait, TierMemory)
	}
	if src.calls.Load() != 1 {
		t.Fatalf("source asked %d times, want 1", src.calls.Load())
	}
	close(src.gate)
	eventually(t, "the page stored and the fetch done", func() bool {
		return src.committed.Load() == 1 && c.Holds(ref, 0, testPage)
	})
	if fs := read(); fs[0].Tier != TierMemory {
		t.Fatalf("read after the store: tier %s, want %s", fs[0].Tier, TierMemory)
	}
}

// readChecked sums each block as it arrives, whatever sizes the reads
// return, and a short source is an error.
func TestReadCheckedSumsEveryBlock(t *testing.T) {
	data := randomBytes(5, 300*kib+77)
	const bs = 32 * kib
	for name, r := range map[string]io.Reader{
		"one read":   bytes.NewReader(data),
		"byte-wise":  iotest.OneByteReader(bytes.NewReader(data)),
		"half reads": iotest.HalfReader(bytes.NewReader(data)),
		"data, EOF":  iotest.DataErrReader(bytes.NewReader(data)),
	} {
		got, crcs, err := readChecked(r, make([]byte, len(data)), bs)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %v, bytes equal %v", name, err, bytes.Equal(got, data))
		}
		if len(crcs) != 10 {
			t.Fatalf("%s: %d checksums for 10 blocks", name, len(crcs))
		}
		for i, c := range crcs {
			if want := blockCRC(data[i*bs : min((i+1)*bs, len(data))]); c != want {
				t.Fatalf("%s: block %d checksum %08x, want %08x", name, i, c, want)
			}
		}
	}
	if _, _, err := readChecked(bytes.NewReader(data[:100]), make([]byte, len(data)), bs); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short source: %v, want ErrUnexpectedEOF", err)
	}
}

// spanSource is a fakeSource that serves ranges across pages.
type spanSource struct{ *fakeSource }

func (spanSource) Spans(context.Context, FileRef) bool { return true }

// Readahead of consecutive pages fills each run of up to ExtentPages pages
// with one fetch from a Source that serves spans, and page by page from
// one that does not.
func TestCachePrefetchRunIsOneFetch(t *testing.T) {
	data := randomBytes(8, 6*4*mib+100)
	pages := []int64{0, 1, 2, 3, 4, 5, 6}
	for _, tc := range []struct {
		name string
		span bool
		want []Span
	}{
		{"spans", true, []Span{{0, 16 * mib}, {16 * mib, 8*mib + 100}}},
		{"page by page", false, []Span{{0, 4 * mib}, {4 * mib, 4 * mib}, {8 * mib, 4 * mib}, {12 * mib, 4 * mib}, {16 * mib, 4 * mib}, {20 * mib, 4 * mib}, {24 * mib, 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeSource()
			ref := fake.add("f", "1", data)
			var src Source = fake
			if tc.span {
				src = spanSource{fake}
			}
			c := defaultCache(t, src)
			if got := c.PrefetchPages(ref, pages); got != len(pages) {
				t.Fatalf("PrefetchPages took %d of %d pages", got, len(pages))
			}
			eventually(t, "prefetches done", func() bool { return c.Holds(ref, 0, ref.Size) })
			if got := fake.fetchRanges(0); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("fetched %v, want %v", got, tc.want)
			}
			readAll(t, c, ref, data, mib, true)
			if fake.bytes.Load() != ref.Size {
				t.Fatalf("source sent %d bytes for a %d-byte file", fake.bytes.Load(), ref.Size)
			}
		})
	}
}

// A run cut short stores the pages that arrived whole and fails the rest,
// which the next read fetches again.
func TestCacheRunCutShort(t *testing.T) {
	fake := newFakeSource()
	data := randomBytes(9, 16*mib)
	ref := fake.add("f", "1", data)
	c := defaultCache(t, spanSource{fake})
	fake.setShort(6 * mib)
	if got := c.PrefetchPages(ref, []int64{0, 1, 2, 3}); got != 4 {
		t.Fatalf("PrefetchPages took %d of 4 pages", got)
	}
	eventually(t, "the run's fill to end", func() bool { return c.Stats().FetchErrors == 1 && c.Holds(ref, 0, 4*mib) })
	if c.Holds(ref, 4*mib, 4*mib) || c.Holds(ref, 8*mib, 8*mib) {
		t.Fatal("pages after the cut are held")
	}
	fake.setShort(0)
	readAll(t, c, ref, data, mib, true)
}

// goroutineSource records the goroutine each Fetch runs on.
type goroutineSource struct {
	*fakeSource
	mu  sync.Mutex
	ids []string
}

func (s *goroutineSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	buf := make([]byte, 64)
	id := strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1] // "goroutine N [running]:"
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	return s.fakeSource.Fetch(ctx, ref, off, n)
}

// Fills one after another are fetched by fillers that stay for the next
// fill, whose stacks have grown already, rather than each by a goroutine
// of its own (a filler still storing the page it fetched, after waking its
// reader, leaves the next fill to another one: a few take turns). Close
// ends the fillers.
func TestCacheFillsReuseTheirGoroutines(t *testing.T) {
	src := &goroutineSource{fakeSource: newFakeSource()}
	const pages = 12
	data := randomBytes(12, pages*4*mib)
	ref := src.add("f", "1", data)
	s := openTestStore(t, StoreConfig{MemoryBytes: 256 * mib})
	c := NewCache(s, src, CacheConfig{Logger: quietLogger()})
	before := runtime.NumGoroutine()
	for page := int64(0); page < pages; page++ {
		buf := make([]byte, 1000)
		if _, _, err := c.ReadAt(context.Background(), ref, buf, page*4*mib, false); err != nil {
			t.Fatal(err)
		}
		// The read returns once the bytes are there, maybe before its
		// filler is back waiting (on a loaded machine, well before).
		eventually(t, "a filler waiting for the next run", func() bool { return c.fillersWaiting.Load() > 0 })
	}
	src.mu.Lock()
	ids := slices.Clone(src.ids)
	src.mu.Unlock()
	distinct := map[string]bool{}
	for _, id := range ids {
		distinct[id] = true
	}
	if len(ids) != pages || len(distinct) > 3 {
		t.Fatalf("%d fills one after another fetched on %d goroutines (%v); want a few fillers taking turns", len(ids), len(distinct), ids)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fillers gone after Close", func() bool { return runtime.NumGoroutine() <= before })
}

// AwaitFills waits for a fill in flight (a prefetch's) to be stored and
// then reports the bytes held; it starts no fetch of its own, returns false
// at once for bytes nobody fetches, and gives up with its context. A fill
// that fails ends the wait with false.
func TestCacheAwaitFills(t *testing.T) {
	src := newFakeSource()
	src.gate = make(chan struct{})
	data := randomBytes(31, 3*testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	ctx := context.Background()

	if c.AwaitFills(ctx, ref, 1, 0, testPage) || src.started.Load() != 0 {
		t.Fatalf("bytes nobody fetches: waited, or started %d fetches", src.started.Load())
	}
	if !c.Prefetch(ref, 0) {
		t.Fatal("prefetch not taken")
	}
	eventually(t, "the prefetch's fetch", func() bool { return src.started.Load() == 1 })
	done := make(chan bool, 1)
	go func() { done <- c.AwaitFills(ctx, ref, 0, 100, testPage-100) }()
	select {
	case got := <-done:
		t.Fatalf("AwaitFills returned %v before the fill's bytes came", got)
	case <-time.After(50 * time.Millisecond):
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if c.AwaitFills(short, ref, 0, 0, testPage) {
		t.Fatal("AwaitFills past its context's end reported the bytes held")
	}
	cancel()
	close(src.gate)
	select {
	case got := <-done:
		if !got || len(c.Store().Missing(ref, 0, 0, testPage)) != 0 {
			t.Fatalf("after the fill: AwaitFills %v, missing %v", got, c.Store().Missing(ref, 0, 0, testPage))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AwaitFills still waiting after the fill was stored")
	}
	if src.started.Load() != 1 {
		t.Fatalf("%d fetches; AwaitFills started some", src.started.Load())
	}

	// A fill that fails.
	src.setFail(errors.New("line down"))
	if !c.Prefetch(ref, 2) {
		t.Fatal("prefetch not taken")
	}
	if c.AwaitFills(ctx, ref, 2, 0, testPage) {
		t.Fatal("AwaitFills reported the bytes of a failed fill held")
	}
}

// A disk that stalls does not stall a fill: the pages of a prefetched
// extent reach the memory tier, and its readers, while the first page's
// disk write waits, and they reach the disk once it goes on.
func TestFillGoesOnWhileTheDiskStalls(t *testing.T) {
	fake := newFakeSource()
	data := randomBytes(41, ExtentPages*testPage)
	ref := fake.add("f", "1", data)
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 64 * mib, MemoryBytes: 64 * mib, PageSize: testPage, BlockSize: testBlock})
	gate := make(chan struct{})
	var waiting atomic.Int64
	s.diskGate = func() { waiting.Add(1); <-gate }
	c := newTestCache(t, s, spanSource{fake}, CacheConfig{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the cache's Close, which waits for its fills

	pages := []int64{0, 1, 2, 3}
	if got := c.PrefetchPages(ref, pages); got != len(pages) {
		t.Fatalf("PrefetchPages took %d of %d pages", got, len(pages))
	}
	eventually(t, "the extent's fetch", func() bool { return fake.started.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, page := range pages {
		if !c.AwaitFills(ctx, ref, page, 0, testPage) {
			t.Fatalf("page %d not in memory while the disk stalls", page)
		}
		p := make([]byte, testPage)
		n, fs, err := c.ReadAt(ctx, ref, p, page*testPage, true)
		if err != nil || n != testPage || !bytes.Equal(p, data[page*testPage:(page+1)*testPage]) {
			t.Fatalf("read page %d while the disk stalls: %d bytes, %v (or wrong bytes)", page, n, err)
		}
		if fs[0].Tier != TierMemory {
			t.Fatalf("page %d read from %s, want %s", page, fs[0].Tier, TierMemory)
		}
	}
	if st := s.Stats(); st.DiskBytes != 0 || waiting.Load() != 1 {
		t.Fatalf("while the disk stalls: %d bytes on disk, %d writes waiting; want 0 and 1", st.DiskBytes, waiting.Load())
	}
	open()
	eventually(t, "the extent on disk", func() bool { return s.Stats().DiskBytes == int64(len(data)) })
	if n := fake.fetchCount(); n != 1 {
		t.Fatalf("%d fetches from the source, want 1", n)
	}
}

// ctxAtCloseSource records, for every reader it hands out, whether the
// fetch's context had ended by the time the cache closed the reader.
type ctxAtCloseSource struct {
	*fakeSource
	closed, cancelled atomic.Int64
}

type ctxAtCloseReader struct {
	io.ReadCloser
	ctx context.Context
	s   *ctxAtCloseSource
}

func (r ctxAtCloseReader) Close() error {
	r.s.closed.Add(1)
	if r.ctx.Err() != nil {
		r.s.cancelled.Add(1)
	}
	return r.ReadCloser.Close()
}

func (s *ctxAtCloseSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	rc, err := s.fakeSource.Fetch(ctx, ref, off, n)
	if err != nil {
		return nil, err
	}
	return ctxAtCloseReader{ReadCloser: rc, ctx: ctx, s: s}, nil
}

// A fill closes its Source reader before it ends the fetch's context: a
// reader cancelled before its Close may drop what it holds (an HTTP
// response that has not seen EOF takes its connection with it).
func TestFillClosesTheSourceBeforeItsContextEnds(t *testing.T) {
	src := &ctxAtCloseSource{fakeSource: newFakeSource()}
	data := randomBytes(43, 3*testPage)
	ref := src.add("f", "1", data)
	s := openTestStore(t, StoreConfig{Dir: t.TempDir(), DiskBytes: 64 * mib, MemoryBytes: 64 * mib, PageSize: testPage, BlockSize: testBlock})
	c := newTestCache(t, s, src, CacheConfig{})
	for page := int64(0); page < 3; page++ {
		p := make([]byte, testPage)
		if n, _, err := c.ReadAt(context.Background(), ref, p, page*testPage, false); err != nil || n != testPage || !bytes.Equal(p, data[page*testPage:(page+1)*testPage]) {
			t.Fatalf("read page %d: %d bytes, %v (or wrong bytes)", page, n, err)
		}
	}
	eventually(t, "the fills' readers closed", func() bool { return src.closed.Load() == 3 })
	if n := src.cancelled.Load(); n != 0 {
		t.Fatalf("%d of 3 Source readers closed after their fetch's context ended", n)
	}
}

// originSource says its bytes crossed a line, as a federated source does.
type originSource struct{ *fakeSource }

type originReader struct {
	io.ReadCloser
	n int64
}

func (r originReader) Origin() Origin {
	return Origin{Region: "far", Node: "far-1", Lines: []string{"far->here"}, Crossed: r.n, Cost: float64(r.n) / 1e9}
}

func (s originSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	rc, err := s.fakeSource.Fetch(ctx, ref, off, n)
	if err != nil {
		return nil, err
	}
	return originReader{rc, n}, nil
}

// A page a readahead brought over a line is reported, once, by the first
// read that uses it: found in the store (ReadAt, Fill), or waited for
// while the readahead fetched it. A read's own fetch is reported to it
// alone.
func TestCacheReadAheadCrossingReportedOnce(t *testing.T) {
	src := originSource{newFakeSource()}
	data := randomBytes(51, 4*testPage)
	ref := src.add("f", "1", data)
	c := smallCache(t, src, CacheConfig{})
	ctx := context.Background()
	p := make([]byte, testPage)
	crossedAhead := func(what string, fs []Fetch, want Tier) {
		t.Helper()
		if len(fs) != 1 || fs[0].Tier != want || fs[0].Origin == nil || !fs[0].Origin.Ahead || fs[0].Origin.Crossed != testPage || fs[0].Origin.Lines[0] != "far->here" {
			t.Fatalf("%s: %+v (origin %+v); want tier %s with the readahead's crossing of %d bytes", what, fs, fs[0].Origin, want, testPage)
		}
	}
	crossedNone := func(what string, fs []Fetch) {
		t.Helper()
		if len(fs) != 1 || fs[0].Origin != nil {
			t.Fatalf("%s: %+v (origin %+v); want no crossing reported again", what, fs, fs[0].Origin)
		}
	}
	held := func(page int64) func() bool {
		return func() bool { return len(c.Store().Missing(ref, page, 0, testPage)) == 0 }
	}

	// Found in the store: ReadAt claims it, a second read does not.
	c.Prefetch(ref, 0)
	eventually(t, "page 0 read ahead", held(0))
	_, fs, err := c.ReadAt(ctx, ref, p, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	crossedAhead("first read of a page read ahead", fs, TierMemory)
	_, fs, _ = c.ReadAt(ctx, ref, p, 0, false)
	crossedNone("second read", fs)

	// Found by a filling read (a short-circuit one).
	c.Prefetch(ref, 1)
	eventually(t, "page 1 read ahead", held(1))
	fs, err = c.Fill(ctx, ref, testPage, testPage, true)
	if err != nil {
		t.Fatal(err)
	}
	crossedAhead("filling read of a page read ahead", fs, TierMemory)
	fs, _ = c.Fill(ctx, ref, testPage, testPage, true)
	crossedNone("second filling read", fs)

	// Waited for while the readahead fetched it.
	src.gate = make(chan struct{})
	c.Prefetch(ref, 2)
	eventually(t, "page 2's readahead fetch", func() bool { return src.started.Load() == 3 })
	got := make(chan []Fetch, 1)
	go func() {
		_, fs, err := c.ReadAt(ctx, ref, make([]byte, testPage), 2*testPage, false)
		if err != nil {
			t.Error(err)
		}
		got <- fs
	}()
	eventually(t, "the read waiting on the readahead", func() bool { return c.Stats().Waits == 1 })
	close(src.gate)
	crossedAhead("read that waited on a readahead", <-got, TierWait)
	_, fs, _ = c.ReadAt(ctx, ref, p, 2*testPage, false)
	crossedNone("read after it", fs)

	// A read's own fetch: reported to it, not to the next read.
	_, fs, _ = c.ReadAt(ctx, ref, p, 3*testPage, false)
	if fs[0].Tier != TierRemote || fs[0].Origin == nil || fs[0].Origin.Ahead {
		t.Fatalf("cold read: %+v (origin %+v); want its own crossing, not a readahead's", fs, fs[0].Origin)
	}
	_, fs, _ = c.ReadAt(ctx, ref, p, 3*testPage, false)
	crossedNone("read after a cold read", fs)
	if n := c.unclaimed.Load(); n != 0 || len(c.aheadOrigins) != 0 {
		t.Fatalf("%d origins left unclaimed (%d kept); want none", n, len(c.aheadOrigins))
	}
}

// peerSource says its bytes came from a peer of the region: no line.
type peerSource struct{ *fakeSource }

type peerReader struct{ io.ReadCloser }

func (peerReader) Origin() Origin { return Origin{Region: "here", Node: "here-2"} }

func (s peerSource) Fetch(ctx context.Context, ref FileRef, off, n int64) (io.ReadCloser, error) {
	rc, err := s.fakeSource.Fetch(ctx, ref, off, n)
	if err != nil {
		return nil, err
	}
	return peerReader{rc}, nil
}

// A readahead that crossed no line leaves nothing to report.
func TestCacheReadAheadWithinTheRegionReportsNothing(t *testing.T) {
	src := peerSource{newFakeSource()}
	ref := src.add("f", "1", randomBytes(52, testPage))
	c := smallCache(t, src, CacheConfig{})
	c.Prefetch(ref, 0)
	eventually(t, "page 0 read ahead", func() bool { return len(c.Store().Missing(ref, 0, 0, testPage)) == 0 })
	eventually(t, "the readahead's fetch done", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inflight) == 0
	})
	_, fs, err := c.ReadAt(context.Background(), ref, make([]byte, testPage), 0, false)
	if err != nil || fs[0].Origin != nil || c.unclaimed.Load() != 0 || len(c.aheadOrigins) != 0 {
		t.Fatalf("read of a page read ahead from a peer: %v, origin %+v, %d unclaimed; want nothing to report", err, fs[0].Origin, c.unclaimed.Load())
	}
}
