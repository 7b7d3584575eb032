package cachenode

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// A memory tier of 10 test pages: high water 9.5 pages, low water 8.5.
const tenPages = 10 * testPage

func putPage(t *testing.T, s *Store, ref FileRef, index int64) {
	t.Helper()
	if err := s.Put(ref, index, 0, randomBytes(uint64(index), testPage)); err != nil {
		t.Fatalf("Put %s page %d: %v", ref.Path, index, err)
	}
}

func holds(s *Store, ref FileRef, index int64) bool {
	return len(s.Missing(ref, index, 0, testPage)) == 0
}

func touch(t *testing.T, s *Store, ref FileRef, index int64) {
	t.Helper()
	if _, _, err := s.Read(ref, index, 0, make([]byte, 1)); err != nil {
		t.Fatalf("Read %s page %d: %v", ref.Path, index, err)
	}
}

func bigFile(path string) FileRef {
	return FileRef{Mount: "/m", Path: path, Version: "1", Size: 100 * testPage}
}

func TestEvictionWatermarksAndLRU(t *testing.T) {
	s := openTestStore(t, StoreConfig{MemoryBytes: tenPages, PageSize: testPage, BlockSize: testBlock})
	ref := bigFile("f")
	for i := int64(0); i < 9; i++ { // 90%: under the high watermark
		putPage(t, s, ref, i)
	}
	touch(t, s, ref, 0) // page 0 is now the most recently used
	if st := s.Stats(); st.MemoryEvictions != 0 || st.MemoryBytes != 9*testPage {
		t.Fatalf("evicted under the high watermark: %+v", st)
	}
	putPage(t, s, ref, 9) // 100%: past high water (95%)
	eventually(t, "eviction down to low water", func() bool { return s.Stats().MemoryBytes <= 85*tenPages/100 })
	st := s.Stats()
	if st.MemoryBytes != 8*testPage || st.MemoryEvictions != 2 || st.EvictedBytes != 2*testPage {
		t.Fatalf("after eviction: %+v; want 8 pages left, 2 evicted", st)
	}
	for i := int64(0); i < 10; i++ {
		if want := i != 1 && i != 2; holds(s, ref, i) != want {
			t.Errorf("page %d held = %v, want %v (LRU order: 1 and 2 go first)", i, !want, want)
		}
	}
}

func TestEvictionExpiredFirst(t *testing.T) {
	s := openTestStore(t, StoreConfig{MemoryBytes: tenPages, PageSize: testPage, BlockSize: testBlock,
		Classify: func(r FileRef) Class {
			if r.Path == "ttl" {
				return Class{TTL: time.Nanosecond}
			}
			return Class{}
		}})
	plain, ttl := bigFile("plain"), bigFile("ttl")
	for i := int64(0); i < 8; i++ {
		putPage(t, s, plain, i)
	}
	putPage(t, s, ttl, 0) // the most recently used, but expired
	putPage(t, s, plain, 8)
	eventually(t, "eviction", func() bool { return s.Stats().MemoryBytes <= 85*tenPages/100 })
	if holds(s, ttl, 0) {
		t.Errorf("expired page kept")
	}
	if holds(s, plain, 0) {
		t.Errorf("least recently used page kept")
	}
	for i := int64(1); i <= 8; i++ {
		if !holds(s, plain, i) {
			t.Errorf("plain page %d evicted", i)
		}
	}
}

func TestEvictionNeverTakesPinnedPages(t *testing.T) {
	logger, logs := newLogRecorder()
	s := openTestStore(t, StoreConfig{MemoryBytes: tenPages, PageSize: testPage, BlockSize: testBlock, Logger: logger,
		Classify: func(r FileRef) Class { return Class{Pin: r.Path == "pinned"} }})
	pinned, plain := bigFile("pinned"), bigFile("plain")
	for i := int64(0); i < 8; i++ {
		putPage(t, s, pinned, i)
	}
	putPage(t, s, plain, 0)
	putPage(t, s, plain, 1) // 100%: only the two plain pages may go
	eventually(t, "eviction", func() bool { return s.Stats().MemoryBytes <= 85*tenPages/100 })
	if st := s.Stats(); st.MemoryEvictions != 2 || st.MemoryBytes != 8*testPage {
		t.Fatalf("after eviction: %+v", st)
	}
	for i := int64(0); i < 8; i++ {
		if !holds(s, pinned, i) {
			t.Fatalf("pinned page %d evicted", i)
		}
	}

	// Only pinned pages left: the tier stays above high water, says so
	// once, and a fill that would pass the hard limit is refused.
	putPage(t, s, pinned, 8)
	putPage(t, s, pinned, 9)
	eventually(t, "above-water report", func() bool { return s.Stats().MemoryAboveWater })
	err := s.Put(plain, 5, 0, randomBytes(5, testPage))
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Put into a tier full of pinned pages = %v, want ErrStoreFull", err)
	}
	if st := s.Stats(); st.MemoryBytes != tenPages || st.PinnedPages != 10 {
		t.Fatalf("stats = %+v", st)
	}
	if got := logs.find("cache tier above its high watermark with nothing evictable"); len(got) != 1 {
		t.Fatalf("logged %d times, want once: %q", len(got), got)
	}

	// Unpinning makes them evictable again.
	if n := s.SetPinned(func(pi PageInfo) bool { return pi.ID.Index < 5 }, false); n != 5 {
		t.Fatalf("SetPinned = %d", n)
	}
	// Below high water again: down to low water when the pass after the
	// unpin found them all unpinned, or just under high water when a pass
	// already running saw the first of them only (the tier is then below
	// high water, and nothing more need go).
	eventually(t, "eviction after unpin", func() bool {
		st := s.Stats()
		return st.MemoryEvictions > 2 && st.MemoryBytes < 95*tenPages/100
	})
	for i := int64(5); i < 10; i++ {
		if !holds(s, pinned, i) {
			t.Fatalf("still-pinned page %d evicted", i)
		}
	}
	if s.Stats().MemoryAboveWater {
		t.Fatalf("still reported above water")
	}
}

// Fills never push a tier past its hard limit, and under pressure they
// wait for eviction instead of failing.
func TestEvictionHardLimitUnderConcurrentFills(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, StoreConfig{Dir: dir, DiskBytes: tenPages, MemoryBytes: tenPages / 2, PageSize: testPage, BlockSize: testBlock})
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	var over error
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st := s.Stats(); st.MemoryBytes > st.MemoryLimit || st.DiskBytes > st.DiskLimit {
				over = errors.New("tier past its hard limit")
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8*40)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := bigFile("f" + string(rune('a'+g)))
			for i := int64(0); i < 40; i++ {
				if err := s.Put(ref, i, 0, randomBytes(uint64(i), testPage)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Put under pressure: %v", err)
	}
	if over != nil {
		t.Fatal(over)
	}
	st := s.Stats()
	if st.DiskEvictions == 0 || st.MemoryEvictions == 0 {
		t.Fatalf("no eviction: %+v", st)
	}
	// What the index says is what is on disk (once the evictor is idle).
	eventually(t, "index matching the disk", func() bool {
		indexed := 0
		for _, pi := range s.Pages(nil) {
			if pi.DiskBytes > 0 {
				indexed++
			}
		}
		onDisk := 0
		for _, sub := range mustReadDir(t, dir+"/pages") {
			for _, f := range mustReadDir(t, dir+"/pages/"+sub) {
				if strings.HasSuffix(f, dataSuffix) {
					onDisk++
				}
			}
		}
		return indexed == onDisk
	})
}

func mustReadDir(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestEvictionOnOpenWhenLimitLowered(t *testing.T) {
	dir := t.TempDir()
	cfg := StoreConfig{Dir: dir, DiskBytes: tenPages, PageSize: testPage, BlockSize: testBlock}
	s := openTestStore(t, cfg)
	ref := bigFile("f")
	for i := int64(0); i < 9; i++ {
		putPage(t, s, ref, i)
	}
	s.Close()
	cfg.DiskBytes = tenPages / 2
	s = openTestStore(t, cfg)
	eventually(t, "eviction to the new limit", func() bool { return s.Stats().DiskBytes <= 85*tenPages/200 })
}
