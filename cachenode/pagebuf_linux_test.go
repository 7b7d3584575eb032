//go:build linux

package cachenode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// missingPages is how many of b's memory pages are not resident.
func missingPages(t *testing.T, b []byte) int {
	t.Helper()
	ps := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := start &^ (ps - 1)
	span := start + uintptr(len(b)) - lo
	vec := make([]byte, (span+ps-1)/ps)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, lo, span, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	missing := 0
	for _, v := range vec {
		if v&1 == 0 {
			missing++
		}
	}
	return missing
}

// memoryFirstBlocks is where the first block of each page the memory tier
// holds starts.
func memoryFirstBlocks(s *Store) []uintptr {
	var firsts []uintptr
	for _, p := range s.Pages(func(PageInfo) bool { return true }) {
		e := s.lookup(p.ID)
		e.mu.RLock()
		if len(e.mem) > 0 && e.mem[0] != nil {
			firsts = append(firsts, uintptr(unsafe.Pointer(unsafe.SliceData(e.mem[0]))))
		}
		e.mu.RUnlock()
	}
	return firsts
}

// A pretouched store has its memory tier's buffers resident before any
// fill; fills take them, and an evicted page's buffer comes back once no
// slice of it is left, to be handed out again.
func TestStorePretouchedBuffersServeFillsAndComeBack(t *testing.T) {
	s := openTestStore(t, StoreConfig{MemoryBytes: 16 * mib, PretouchMemory: true})
	<-s.pretouched
	if got := s.bufs.idle(); got != 4 {
		t.Fatalf("%d buffers idle after pretouch, want the tier's 4 pages", got)
	}
	for i, b := range s.bufs.free {
		if n := missingPages(t, b); n > 0 {
			t.Fatalf("pretouched buffer %d has %d pages not resident", i, n)
		}
	}

	src := newFakeSource()
	data := randomBytes(3, 8*mib)
	ref := src.add("f", "1", data)
	c := newTestCache(t, s, src, CacheConfig{})
	readAll(t, c, ref, data, mib, true)
	if got := s.bufs.idle(); got != 2 {
		t.Fatalf("%d buffers idle after filling 2 pages, want 2", got)
	}
	// A reader is woken before its fill is stored: wait for the store.
	firstBlocks := func() []uintptr { return memoryFirstBlocks(s) }
	var kept []uintptr
	eventually(t, "both pages stored in memory", func() bool { kept = firstBlocks(); return len(kept) == 2 })
	if pages, _ := s.Evict(func(PageInfo) bool { return true }); pages != 2 {
		t.Fatalf("evicted %d pages, want 2", pages)
	}
	eventually(t, "evicted buffers back on the free list", func() bool {
		runtime.GC()
		return s.bufs.idle() == 4
	})
	// The next fills read into those same buffers, not fresh memory.
	readAll(t, c, ref, data, mib, true)
	var again []uintptr
	eventually(t, "both pages stored in memory again", func() bool { again = firstBlocks(); return len(again) == 2 })
	for _, first := range again {
		if first != kept[0] && first != kept[1] {
			t.Fatalf("a page filled into a new buffer, not a recycled one")
		}
	}
	if s.bufs.reused.Load() < 2 {
		t.Fatalf("%d buffers reused, want 2", s.bufs.reused.Load())
	}
}

// Buffers larger than the pool's are plain allocations, and the pool
// never owns more than its limit.
func TestPageBuffersBounded(t *testing.T) {
	p := newPageBuffers(mib, 2)
	if b := p.get(2 * mib); len(b) != 2*mib {
		t.Fatalf("get(%d) gave %d bytes", 2*mib, len(b))
	}
	var held [][]byte
	for range 3 {
		held = append(held, p.get(mib))
	}
	if p.owned != 2 {
		t.Fatalf("pool owns %d buffers, want its limit 2", p.owned)
	}
	held = nil
	eventually(t, "owned buffers back", func() bool {
		runtime.GC()
		return p.idle() == 2
	})
	if n, _ := p.pretouch(5, make(chan struct{})); n != 0 {
		t.Fatalf("pretouch past the limit touched %d bytes", n)
	}
}

// Pages shorter than a buffer are cut from one, one after another at
// aligned offsets, each with no room to grow into the next; the pool
// holds the buffer it cuts from only weakly, so it comes back once no
// page cut from it is left.
func TestPageBuffersCutShortPages(t *testing.T) {
	p := newPageBuffers(mib, 4)
	const n = 100 << 10 // 25 blocks of 4 KiB: ten fit in a buffer
	var pieces [][]byte
	for range 11 {
		pieces = append(pieces, p.get(n))
	}
	if p.owned != 2 || p.fresh.Load() != 2 {
		t.Fatalf("11 pages of 100 KiB took %d new buffers (%d owned), want 2", p.fresh.Load(), p.owned)
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(pieces[0])))
	for i, b := range pieces {
		at := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if len(b) != n || cap(b) != n {
			t.Fatalf("piece %d: %d bytes with room for %d, want %d and %d", i, len(b), cap(b), n, n)
		}
		if at%cutAlign != 0 {
			t.Fatalf("piece %d starts at %#x, not a multiple of %d", i, at, cutAlign)
		}
		if i < 10 && at != base+uintptr(i*n) {
			t.Fatalf("piece %d at %#x, want %#x: right after the one before, in the same buffer", i, at, base+uintptr(i*n))
		}
	}
	if last := uintptr(unsafe.Pointer(unsafe.SliceData(pieces[10]))); last >= base && last < base+mib {
		t.Fatal("the eleventh piece overlaps the first buffer")
	}
	for i := range pieces {
		pieces[i][0], pieces[i][n-1] = byte(i), byte(i)
	}
	for i := range pieces {
		if pieces[i][0] != byte(i) || pieces[i][n-1] != byte(i) {
			t.Fatalf("piece %d was written by another", i)
		}
	}
	pieces = nil
	eventually(t, "both buffers back", func() bool {
		runtime.GC()
		return p.idle() == 2
	})
	if b := p.get(n); len(b) != n || p.fresh.Load() != 2 || p.reused.Load() != 1 {
		t.Fatalf("a cut after the buffers came back took a new buffer (%d new, %d reused), want a given-back one", p.fresh.Load(), p.reused.Load())
	}
}

// Pages are cut only from buffers the pool owns: once it owns its limit
// and none is free, a short page is a plain allocation of its own size,
// so hot pages scattered over many buffers cannot hold more whole buffers
// than the limit.
func TestPageBuffersCutOnlyOwnedBuffers(t *testing.T) {
	p := newPageBuffers(mib, 1)
	const n = 100 << 10
	first := p.get(n) // cut from the one owned buffer
	held := [][]byte{first}
	for range 9 {
		held = append(held, p.get(n)) // the rest of that buffer
	}
	over := p.get(n) // the buffer is full, and the pool owns its limit
	if p.owned != 1 || p.fresh.Load() != 1 {
		t.Fatalf("the pool owns %d buffers after %d new ones; want 1 and 1 (no whole buffer taken past the limit)", p.owned, p.fresh.Load())
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(first)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(over)))
	if len(over) != n || cap(over) != n || (at >= base && at < base+mib) {
		t.Fatalf("a page past the limit: %d bytes with room for %d at %#x (the owned buffer at %#x)", len(over), cap(over), at, base)
	}
	// The next owned buffer given back is cut again.
	held = nil
	eventually(t, "the owned buffer back", func() bool {
		runtime.GC()
		return p.idle() == 1
	})
	if again := p.get(n); uintptr(unsafe.Pointer(unsafe.SliceData(again))) != base {
		t.Fatal("a page after the owned buffer came back was not cut from it")
	}
	runtime.KeepAlive(over)
}

// A small file's page is filled into the memory tier's pretouched
// buffers, not into fresh memory that faults in page by page.
func TestStoreFillsSmallPagesIntoPretouchedBuffers(t *testing.T) {
	s := openTestStore(t, StoreConfig{MemoryBytes: 16 * mib, PretouchMemory: true})
	<-s.pretouched
	type span struct{ lo, hi uintptr }
	var pretouched []span
	for _, b := range s.bufs.free {
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		pretouched = append(pretouched, span{lo, lo + uintptr(len(b))})
	}
	src := newFakeSource()
	c := newTestCache(t, s, src, CacheConfig{})
	const files = 20
	for i := range files {
		data := randomBytes(uint64(10+i), 100<<10)
		readAll(t, c, src.add(fmt.Sprintf("small-%d", i), "1", data), data, 128<<10, true)
	}
	var firsts []uintptr
	eventually(t, "the small pages stored in memory", func() bool {
		firsts = memoryFirstBlocks(s)
		return len(firsts) == files
	})
	for _, at := range firsts {
		in := false
		for _, sp := range pretouched {
			in = in || (at >= sp.lo && at < sp.hi)
		}
		if !in {
			t.Fatalf("a small page is in memory at %#x, outside the pretouched buffers", at)
		}
	}
	if fresh := s.bufs.fresh.Load(); fresh != 0 {
		t.Fatalf("%d fresh buffers taken for %d small pages, want none", fresh, files)
	}
}

// Once the memory tier is full, every fill takes the buffer of a page
// evicted before it instead of fresh memory: eviction has the garbage
// collector give the buffers back at once, where left to itself it would
// wait for about as many bytes again of new allocations (here, with its
// pacing off, for ever).
func TestFillsPastAFullTierReuseEvictedBuffers(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	s := openTestStore(t, StoreConfig{MemoryBytes: 16 * mib, PretouchMemory: true})
	<-s.pretouched
	// Fills from memory outrun the pacing meant for a node's fills from a
	// lake (TestReclaimKeepsCollectionsApart): a collection after every
	// pass here.
	s.bufs.gcGap = 0
	src := newFakeSource()
	const pages = 24
	data := randomBytes(4, pages*4*mib)
	ref := src.add("f", "1", data)
	c := newTestCache(t, s, src, CacheConfig{})
	buf := make([]byte, 4*mib)
	for i := range pages {
		off := int64(i) * 4 * mib
		if _, _, err := c.ReadAt(context.Background(), ref, buf, off, false); err != nil || !bytes.Equal(buf, data[off:off+4*mib]) {
			t.Fatalf("page %d: %v, or other bytes", i, err)
		}
		// A fill from memory takes microseconds, a node's from a lake
		// milliseconds: give the eviction the page's fill set off, and
		// its collection, the time a lake's fill would (at most a
		// second) before the next fill takes a buffer.
		for deadline := time.Now().Add(time.Second); s.bufs.idle() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	// The 4 pretouched buffers and the pool's 4 spare ones at most.
	if fresh := s.bufs.fresh.Load(); fresh > 8 {
		t.Fatalf("%d fills of %d pages read into fresh buffers (%d collections, %d reused), want at most 8", fresh, pages, s.bufs.collections.Load(), s.bufs.reused.Load())
	}
}

// After a collection that took d, the next waits 9d: a node whose heap is
// large spends at most a tenth of its time collecting for buffers. A
// request within the gap is served after it, not dropped.
func TestReclaimKeepsCollectionsApart(t *testing.T) {
	p := newPageBuffers(mib, 4)
	defer p.close()
	before := time.Now().UnixNano()
	p.reclaim()
	// The collector sets the next collection's earliest time once the
	// collection is done.
	eventually(t, "the collection done", func() bool { return p.collections.Load() == 1 && p.nextCollection.Load() != 0 })
	if next := p.nextCollection.Load(); next <= before {
		t.Fatalf("next collection allowed at %d, before the first one started (%d)", next, before)
	}
	gapEnd := time.Now().Add(300 * time.Millisecond)
	p.nextCollection.Store(gapEnd.UnixNano())
	p.reclaim()
	p.reclaim() // coalesces with the one waiting
	time.Sleep(100 * time.Millisecond)
	if got := p.collections.Load(); got != 1 {
		t.Fatalf("%d collections, want 1: the second came within the gap", got)
	}
	eventually(t, "a collection once the gap is over", func() bool { return p.collections.Load() == 2 })
	if time.Now().Before(gapEnd) {
		t.Fatalf("the second collection came before the gap's end")
	}
	time.Sleep(50 * time.Millisecond)
	if got := p.collections.Load(); got != 2 {
		t.Fatalf("%d collections after two requests within the gap, want them as one", got)
	}
}
