package cachenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// CacheConfig configures the fill layer over a page store.
type CacheConfig struct {
	// Logger receives fill events (nil: slog.Default()).
	Logger *slog.Logger
	// MaxConcurrentFetches bounds the Source fetches in flight at once,
	// reads and prefetches together (default 16).
	MaxConcurrentFetches int
	// MaxPrefetches bounds the background page fills in flight; a Prefetch
	// beyond it is dropped, not queued (default MaxConcurrentFetches).
	MaxPrefetches int
}

// Fetch reports where the bytes of one page touched by a read came from.
type Fetch struct {
	Page int64 // page index
	// Tier is TierMemory or TierDisk if the store held every byte the
	// read needed, TierLake if this call fetched some from the Source,
	// TierWait if it only waited on other callers' fetches.
	Tier     Tier
	Bytes    int64         // bytes of the read in this page
	Fetched  int64         // bytes this call fetched from the Source for this page
	Duration time.Duration // from the start of the read until the page's bytes were in place
	// Origin is where the Source says the fetched bytes came from (set
	// only when this call fetched and the Source reports it).
	Origin *Origin
}

// CacheStats counts the fill layer's work.
type CacheStats struct {
	Fetches         int64 // Source fetches started
	FetchedBytes    int64 // bytes received from the Source by successful fetches
	FetchErrors     int64 // fetches that failed
	Waits           int64 // times a read waited on another caller's fetch
	StoreErrors     int64 // fetched bytes the store could not keep (served anyway)
	Prefetches      int64 // background page fills started
	PrefetchDropped int64 // Prefetch calls dropped because the bound was reached
}

// Cache reads files through a page store, filling what the store is
// missing from a Source. Concurrent reads that need the same missing
// block share one fetch. It is safe for concurrent use.
type Cache struct {
	store *Store
	src   Source
	log   *slog.Logger

	fetchSlots    chan struct{} // semaphore: Source fetches in flight
	prefetchSlots chan struct{} // semaphore: background fills in flight
	idleFillers   chan []*fetch // a run for a filler waiting for one (see fill.go)
	// fillersWaiting counts the fillers waiting for a run.
	fillersWaiting atomic.Int32

	ctx    context.Context // cancelled by Close; bounds every fetch
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetch and prefetch goroutines

	// mu guards inflight, and orders closing against wg.Add. Lock order:
	// Cache.mu before the store's locks (plan calls Store.Missing while
	// holding it).
	mu       sync.Mutex
	inflight map[PageID][]*fetch
	closed   atomic.Bool // set under mu; read without it on the fast path

	fetches, fetchedBytes, fetchErrors, waits, storeErrors, prefetches, prefetchDropped atomic.Int64

	// aheadOrigins holds, by page, where the bytes of readaheads' fetches
	// that have left inflight came from, until a read claims them
	// (ClaimAhead); at most maxAheadOrigins pages. Guarded by mu.
	aheadOrigins map[PageID]*Origin
	// unclaimed counts the origins of readaheads' fetches not yet claimed
	// (in inflight or in aheadOrigins), so that reads skip the lock when
	// there are none. Changed under mu.
	unclaimed atomic.Int64
}

// maxAheadOrigins bounds the pages whose readahead crossings wait for a
// read to claim them; beyond it the oldest-looking (any) is dropped.
const maxAheadOrigins = 4096

// NewCache returns a fill layer over store that fills from src.
func NewCache(store *Store, src Source, cfg CacheConfig) *Cache {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConcurrentFetches <= 0 {
		cfg.MaxConcurrentFetches = 16
	}
	if cfg.MaxPrefetches <= 0 {
		cfg.MaxPrefetches = cfg.MaxConcurrentFetches
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		store:         store,
		src:           src,
		log:           cfg.Logger,
		fetchSlots:    make(chan struct{}, cfg.MaxConcurrentFetches),
		prefetchSlots: make(chan struct{}, cfg.MaxPrefetches),
		idleFillers:   make(chan []*fetch),
		ctx:           ctx,
		cancel:        cancel,
		inflight:      make(map[PageID][]*fetch),
		aheadOrigins:  make(map[PageID]*Origin),
	}
}

// ClaimAhead returns where the bytes of page index of ref came from when
// a readahead fetched them (a Prefetch) and no read has reported them
// yet, marked Ahead, and nil otherwise. A crossing made ahead of a reader
// is thus reported once, by the first read that uses the page: ReadAt
// and Fill claim for the pages they touch; a front end that serves a
// page without them (a short-circuit memory read) calls it.
func (c *Cache) ClaimAhead(ref FileRef, index int64) *Origin {
	if c.unclaimed.Load() == 0 {
		return nil
	}
	pid := PageID{File: ref.ID(), Index: index}
	c.mu.Lock()
	defer c.mu.Unlock()
	var o *Origin
	for _, f := range c.inflight[pid] {
		if f.finished && f.crossedAhead() && !f.claimed {
			f.claimed = true
			c.unclaimed.Add(-1)
			o = mergeOrigin(o, f.origin)
		}
	}
	if kept := c.aheadOrigins[pid]; kept != nil {
		delete(c.aheadOrigins, pid)
		c.unclaimed.Add(-1)
		o = mergeOrigin(o, kept)
	}
	if o != nil {
		o.Ahead = true
	}
	return o
}

// keepAheadLocked keeps the origin of a readahead's fetch leaving
// inflight, if no read claimed it, for ClaimAhead. c.mu is held.
func (c *Cache) keepAheadLocked(f *fetch) {
	if !f.crossedAhead() || f.claimed {
		return
	}
	f.claimed = true // moved: counted once, by its entry
	if kept := c.aheadOrigins[f.id]; kept != nil {
		mergeOrigin(kept, f.origin)
		c.unclaimed.Add(-1)
		return
	}
	if len(c.aheadOrigins) >= maxAheadOrigins {
		for pid := range c.aheadOrigins {
			delete(c.aheadOrigins, pid)
			c.unclaimed.Add(-1)
			break
		}
	}
	c.aheadOrigins[f.id] = mergeOrigin(nil, f.origin)
}

// Store is the page store the cache fills.
func (c *Cache) Store() *Store { return c.store }

// Stats returns the fill layer's counters.
func (c *Cache) Stats() CacheStats {
	return CacheStats{
		Fetches:         c.fetches.Load(),
		FetchedBytes:    c.fetchedBytes.Load(),
		FetchErrors:     c.fetchErrors.Load(),
		Waits:           c.waits.Load(),
		StoreErrors:     c.storeErrors.Load(),
		Prefetches:      c.prefetches.Load(),
		PrefetchDropped: c.prefetchDropped.Load(),
	}
}

// Close stops background fills, cancels fetches in flight and waits for
// their goroutines. Reads after Close fail with ErrStoreClosed. It does not
// close the store.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// ReadAt reads bytes [off, off+len(p)) of ref into p, filling what the
// store is missing from the Source. Like io.ReaderAt, it returns io.EOF
// when the read is clipped at ref.Size (n < len(p)).
//
// With sequential, every touched page that misses anything is filled
// whole (one ranged fetch for its missing blocks); otherwise only the
// blocks the read touches are filled. Fetches of one page's missing blocks
// are shared: a caller that needs a block another caller is fetching waits
// for that fetch instead of starting its own. Fetch failures (including
// errors wrapping ufs.ErrVersionChanged) are returned to every caller that
// needed the bytes, and nothing of a failed or short fetch is stored.
//
// fetches has one entry per touched page, in page order.
func (c *Cache) ReadAt(ctx context.Context, ref FileRef, p []byte, off int64, sequential bool) (n int, fetches []Fetch, err error) {
	if c.closed.Load() {
		return 0, nil, ErrStoreClosed
	}
	if off < 0 {
		return 0, nil, fmt.Errorf("read %s at %d: negative offset", ref, off)
	}
	if off >= ref.Size {
		if len(p) == 0 {
			return 0, nil, nil
		}
		return 0, nil, io.EOF
	}
	start := time.Now()
	end := min(off+int64(len(p)), ref.Size)
	ps := c.store.PageSize()
	var pending []*pageRead
	for i := off / ps; i*ps < end; i++ {
		lo, hi := max(off, i*ps), min(end, (i+1)*ps)
		r := &pageRead{index: i, start: lo - i*ps, end: hi - i*ps, dst: p[lo-off : hi-off]}
		k, tier, err := c.store.Read(ref, i, r.start, r.dst)
		switch {
		case err == nil && int64(k) == r.end-r.start:
			fetches = append(fetches, Fetch{Page: i, Tier: tier, Bytes: int64(k), Duration: time.Since(start), Origin: c.ClaimAhead(ref, i)})
			continue
		case err != nil && !errors.Is(err, ErrMissing):
			return 0, nil, fmt.Errorf("read %s page %d: %w", ref, i, err)
		}
		r.slot = len(fetches)
		fetches = append(fetches, Fetch{Page: i})
		pending = append(pending, r)
	}
	if len(pending) > 0 {
		if err := c.fill(ctx, ref, pending, sequential); err != nil {
			return 0, nil, err
		}
		for _, r := range pending {
			fetches[r.slot] = Fetch{Page: r.index, Tier: r.tier, Bytes: r.end - r.start, Fetched: r.fetched, Duration: r.doneAt.Sub(start), Origin: r.origin}
		}
	}
	n = int(end - off)
	if n < len(p) {
		return n, fetches, io.EOF
	}
	return n, fetches, nil
}

// ReadCached reads bytes [off, off+len(p)) of ref from the page store
// alone: it fails with an error wrapping ErrNotCached when any byte is
// missing, and never fetches. Like ReadAt, it returns io.EOF when the read
// is clipped at ref.Size.
func (c *Cache) ReadCached(ref FileRef, p []byte, off int64) (n int, fetches []Fetch, err error) {
	switch {
	case off < 0:
		return 0, nil, fmt.Errorf("read %s at %d: negative offset", ref, off)
	case off >= ref.Size:
		return 0, nil, io.EOF
	}
	start := time.Now()
	end := min(off+int64(len(p)), ref.Size)
	ps := c.store.PageSize()
	for i := off / ps; i*ps < end; i++ {
		lo, hi := max(off, i*ps), min(end, (i+1)*ps)
		k, tier, err := c.store.Read(ref, i, lo-i*ps, p[lo-off:hi-off])
		if errors.Is(err, ErrMissing) || (err == nil && int64(k) < hi-lo) {
			return 0, nil, fmt.Errorf("read %s page %d: %w", ref, i, ErrNotCached)
		}
		if err != nil {
			return 0, nil, fmt.Errorf("read %s page %d: %w", ref, i, err)
		}
		fetches = append(fetches, Fetch{Page: i, Tier: tier, Bytes: int64(k), Duration: time.Since(start)})
	}
	n = int(end - off)
	if n < len(p) {
		return n, fetches, io.EOF
	}
	return n, fetches, nil
}

// Fill makes the page store hold bytes [off, off+n) of ref, fetching what
// it is missing (whole pages when sequential), without copying them
// anywhere; it reports the touched pages like ReadAt.
func (c *Cache) Fill(ctx context.Context, ref FileRef, off, n int64, sequential bool) ([]Fetch, error) {
	if c.closed.Load() {
		return nil, ErrStoreClosed
	}
	end := min(off+n, ref.Size)
	if off < 0 || off >= end {
		return nil, nil
	}
	start := time.Now()
	ps := c.store.PageSize()
	var pending []*pageRead
	var fetches []Fetch
	for i := off / ps; i*ps < end; i++ {
		lo, hi := max(off, i*ps), min(end, (i+1)*ps)
		fillLo, fillN := lo-i*ps, hi-lo
		if sequential {
			fillLo, fillN = 0, c.store.PageLen(ref, i)
		}
		if len(c.store.Missing(ref, i, fillLo, fillN)) == 0 {
			fetches = append(fetches, Fetch{Page: i, Tier: TierMemory, Duration: time.Since(start), Origin: c.ClaimAhead(ref, i)})
			continue
		}
		pending = append(pending, &pageRead{index: i, start: lo - i*ps, end: hi - i*ps, slot: len(fetches)})
		fetches = append(fetches, Fetch{Page: i})
	}
	if len(pending) > 0 {
		if err := c.fill(ctx, ref, pending, sequential); err != nil {
			return nil, err
		}
		for _, r := range pending {
			tier := r.tier
			if tier == "" {
				tier = TierMemory
			}
			fetches[r.slot] = Fetch{Page: r.index, Tier: tier, Fetched: r.fetched, Duration: r.doneAt.Sub(start), Origin: r.origin}
		}
	}
	return fetches, nil
}

// AwaitFills waits, when every block of bytes [off, end) of page index of
// ref that the store is missing is being fetched (a readahead's fill in
// flight), until the store holds them, and reports whether it does. It
// starts no fetch: a block nobody fetches makes it report false at once,
// as does the end of ctx.
func (c *Cache) AwaitFills(ctx context.Context, ref FileRef, index, off, end int64) bool {
	pid := PageID{File: ref.ID(), Index: index}
	bs := c.store.BlockSize()
	for {
		c.mu.Lock()
		missing := c.store.Missing(ref, index, off, end-off)
		if len(missing) == 0 {
			c.mu.Unlock()
			return true
		}
		var wait *fetch
		active := c.inflight[pid]
		for _, sp := range missing {
			for b := int(sp.Off / bs); int64(b)*bs < sp.End(); b++ {
				i := slices.IndexFunc(active, func(f *fetch) bool { return f.covers(b) })
				if i < 0 {
					c.mu.Unlock()
					return false
				}
				wait = active[i]
			}
		}
		c.mu.Unlock()
		// The bytes are wanted from memory: wait until the memory tier has
		// them, not for their disk write; if it did not take them, until
		// the disk has them.
		ch := wait.held
		select {
		case <-ch:
			ch = wait.stored
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// Holds reports whether the page store holds every byte of [off, off+n)
// of ref.
func (c *Cache) Holds(ref FileRef, off, n int64) bool {
	end := min(off+n, ref.Size)
	if off < 0 || off >= end {
		return off >= 0 && off <= ref.Size
	}
	ps := c.store.PageSize()
	for i := off / ps; i*ps < end; i++ {
		lo, hi := max(off, i*ps), min(end, (i+1)*ps)
		if len(c.store.Missing(ref, i, lo-i*ps, hi-lo)) > 0 {
			return false
		}
	}
	return true
}

// Prefetch fills the whole page index of ref in the background if the
// store is missing any of it (readahead). It returns at once, reporting
// whether a fill was started or was not needed; it returns false when the
// bound on background fills is reached (the request is dropped, never
// queued), when the page lies outside the file, or after Close.
func (c *Cache) Prefetch(ref FileRef, index int64) bool {
	return c.PrefetchPages(ref, []int64{index}) == 1 && c.store.PageLen(ref, index) > 0
}

// PrefetchPages fills the given pages of ref in the background, as
// Prefetch does one. Consecutive pages, up to ExtentPages of them, fill
// as one background fill (one Source fetch where the Source serves spans).
// It returns how many of pages, in order, it took: those after are
// dropped because the bound on background fills was reached or the cache
// is closed. Pages outside the file are taken and skipped.
func (c *Cache) PrefetchPages(ref FileRef, pages []int64) int {
	taken := 0
	for taken < len(pages) {
		n := 1
		for taken+n < len(pages) && n < ExtentPages && pages[taken+n] == pages[taken+n-1]+1 {
			n++
		}
		var reads []*pageRead
		for _, index := range pages[taken : taken+n] {
			length := c.store.PageLen(ref, index)
			if length > 0 && len(c.store.Missing(ref, index, 0, length)) > 0 {
				reads = append(reads, &pageRead{index: index, start: 0, end: length, ahead: true}) // no dst: fill only
			}
		}
		if len(reads) > 0 && !c.prefetch(ref, reads) {
			return taken
		}
		taken += n
	}
	return taken
}

// prefetch fills reads in the background, taking a background fill slot;
// it reports false when none is free or the cache is closed.
func (c *Cache) prefetch(ref FileRef, reads []*pageRead) bool {
	select {
	case c.prefetchSlots <- struct{}{}:
	default:
		c.prefetchDropped.Add(1)
		return false
	}
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		<-c.prefetchSlots
		return false
	}
	c.wg.Add(1)
	c.mu.Unlock()
	c.prefetches.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.prefetchSlots }()
		if err := c.fill(c.ctx, ref, reads, true); err != nil && c.ctx.Err() == nil {
			c.log.Debug("prefetch failed", "file", ref, "pages", len(reads), "first", reads[0].index, "err", err)
		}
	}()
	return true
}
