package cachenode

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"
)

// pageBuffers recycles the page-sized buffers that fills read into and the
// memory tier keeps. A buffer it hands out carries a finalizer: once the
// garbage collector finds no slice of it left (its blocks evicted, every
// reader done), the buffer comes back here instead of being freed, so it is
// reused without being faulted in again or cleared.
//
// Fresh memory is what a fill into a growing memory tier paid most for: on
// the project's virtual machine a cold sequential read spent 1.4 CPU
// seconds per GiB in the kernel clearing new huge pages (60% of the nodes'
// CPU), and 0.8 CPU-s per GiB in all once the tier was full and its memory
// was reused. pretouch faults the tier's buffers in ahead of the reads, as
// a JVM's AlwaysPreTouch does for its heap.
//
// It owns at most limit buffers; past that, buffers are plain allocations.
//
// A page shorter than a buffer (a small file's, or a large file's last)
// is cut from one (cut): a node's cold small files spent 10-14% of its
// CPU faulting in fresh memory for each, while the pretouched buffers sat
// on the free list. The pool points at the buffer it cuts from weakly, so
// that buffer, like any other, comes back once no page cut from it is
// left.
//
// The garbage collector is what gives buffers back, and on its own it runs
// too seldom for that: the memory tier is most of the node's heap, so at
// GOGC=100 it waits for about as many bytes again of new allocations, and
// every fill past the owned buffers meanwhile reads into fresh memory. Once
// the tier was full, a cold read's nodes spent 1.8-2.0 CPU-s per GiB, 72%
// of it clearing new huge pages. So an eviction pass that freed memory
// blocks runs a collection at once (reclaim). get does not: with the tier
// full of pinned pages nothing would come back, and it would collect
// without end.
type pageBuffers struct {
	size  int
	limit int

	mu    sync.Mutex
	free  [][]byte
	owned int

	cutMu   sync.Mutex
	cutFrom weak.Pointer[byte] // the buffer pages shorter than size are cut from
	cutAt   int                // where the next cut starts in it

	reused, touched, fresh, collections atomic.Int64
	nextCollection                      atomic.Int64 // unix nanos: no collection before
	gcGap                               int          // a collection that took d is followed by none for gcGap*d

	collectorOnce sync.Once
	wake          chan struct{} // capacity 1: requests coalesce
	stop, stopped chan struct{}
}

func newPageBuffers(size int64, limit int) *pageBuffers {
	return &pageBuffers{size: int(size), limit: limit, gcGap: 9}
}

// get returns a buffer of n bytes, whose contents are undefined: the
// caller overwrites all of it.
func (p *pageBuffers) get(n int64) []byte {
	switch {
	case p == nil || n <= 0 || n > int64(p.size):
		return newFillBuffer(n)
	case n < int64(p.size):
		return p.cut(int(n))
	}
	return p.whole()
}

// cutAlign is where pages cut from a buffer start: a packed page is
// written from its buffer with direct I/O, which wants aligned memory.
const cutAlign = directAlign

// cut returns n bytes (less than a buffer) cut from a whole buffer, after
// the pages cut from it before, or from the next whole buffer when they
// leave too little. Its capacity is n: an append never runs into the next
// page's bytes.
//
// Only owned buffers are cut. A buffer stays while any page cut from it
// does (a hot page among evicted ones keeps its whole buffer), so the
// buffers pages are cut from are bounded by the pool's limit; past it a
// page gets a plain allocation of its own size, as before pages were cut,
// and the node's memory stays within the tier's pages plus the limit.
func (p *pageBuffers) cut(n int) []byte {
	p.cutMu.Lock()
	defer p.cutMu.Unlock()
	var b []byte
	if first := p.cutFrom.Value(); first != nil && p.cutAt+n <= p.size {
		b = unsafe.Slice(first, p.size)
	} else {
		if b = p.takeOwned(); b == nil {
			return newFillBuffer(int64(n))
		}
		p.cutFrom, p.cutAt = weak.Make(unsafe.SliceData(b)), 0
	}
	at := p.cutAt
	p.cutAt = min(p.size, (at+n+cutAlign-1)&^(cutAlign-1))
	return b[at : at+n : at+n]
}

// whole returns a buffer of the pool's size: one the pool owns
// (takeOwned), else a plain allocation.
func (p *pageBuffers) whole() []byte {
	if b := p.takeOwned(); b != nil {
		return b
	}
	p.fresh.Add(1)
	return newFillBuffer(int64(p.size))
}

// takeOwned returns a buffer the pool owns, which comes back to it once
// nothing refers to it: one given back, else a new one while the pool is
// under its limit, else nil.
func (p *pageBuffers) takeOwned() []byte {
	p.mu.Lock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		p.mu.Unlock()
		p.reused.Add(1)
		p.track(b)
		return b
	}
	if p.owned >= p.limit {
		p.mu.Unlock()
		return nil
	}
	p.owned++
	p.mu.Unlock()
	p.fresh.Add(1)
	b := newFillBuffer(int64(p.size))
	p.track(b)
	return b
}

// reclaim asks for a garbage collection, so that the buffers nothing
// refers to any more come back. The heap's bulk is the buffers, which
// hold no pointers and are not scanned: a collection's work is the node's
// small objects (10 ms for 200,000 on this project's machine), and an
// eviction pass frees a tenth of the tier. One goroutine collects, so
// requests made during a collection get one more after it. A node whose
// metadata runs to millions of objects pays more per collection, so
// collections keep to a tenth of the time: after one that took d, the
// next waits 9d (gcGap).
func (p *pageBuffers) reclaim() {
	if p == nil {
		return
	}
	p.collectorOnce.Do(func() {
		p.wake, p.stop, p.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go p.collector()
	})
	select {
	case p.wake <- struct{}{}:
	default: // one is pending already
	}
}

func (p *pageBuffers) collector() {
	defer close(p.stopped)
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		if wait := time.Until(time.Unix(0, p.nextCollection.Load())); wait > 0 {
			select {
			case <-time.After(wait):
			case <-p.stop:
				return
			}
		}
		select {
		case <-p.wake: // asked again while waiting: this collection serves it
		default:
		}
		p.collections.Add(1)
		start := time.Now()
		runtime.GC()
		end := time.Now()
		p.nextCollection.Store(end.Add(time.Duration(p.gcGap) * end.Sub(start)).UnixNano())
	}
}

// close stops the collector, if reclaim started it.
func (p *pageBuffers) close() {
	if p == nil {
		return
	}
	p.collectorOnce.Do(func() {}) // none starts after this
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
	}
}

// newFillBuffer allocates a buffer a fill reads into and the memory tier
// may keep.
func newFillBuffer(n int64) []byte {
	b := make([]byte, n)
	adviseHugePages(b)
	return b
}

// track has b come back to the free list once nothing refers to it.
func (p *pageBuffers) track(b []byte) {
	runtime.SetFinalizer(unsafe.SliceData(b), p.recycle)
}

func (p *pageBuffers) recycle(first *byte) {
	p.mu.Lock()
	p.free = append(p.free, unsafe.Slice(first, p.size))
	p.mu.Unlock()
}

// pretouch allocates buffers until p owns count of them (at most its
// limit) and writes to every page of each, so that fills find them
// resident. It stops early when stop is closed, and reports how many bytes
// it touched and how long that took.
func (p *pageBuffers) pretouch(count int, stop <-chan struct{}) (int64, time.Duration) {
	start := time.Now()
	var bytes int64
	for {
		select {
		case <-stop:
			return bytes, time.Since(start)
		default:
		}
		p.mu.Lock()
		if p.owned >= min(count, p.limit) {
			p.mu.Unlock()
			return bytes, time.Since(start)
		}
		p.owned++
		p.mu.Unlock()
		b := newFillBuffer(int64(p.size))
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		bytes += int64(len(b))
		p.touched.Add(int64(len(b)))
		p.mu.Lock()
		p.free = append(p.free, b)
		p.mu.Unlock()
	}
}

// idle is the number of buffers on the free list.
func (p *pageBuffers) idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
