package cachenode

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the page store that callers branch on.
var (
	// ErrMissing: bytes asked of the store are not in it (never stored,
	// evicted, or dropped because their checksum failed). The fill layer
	// fetches them.
	ErrMissing = errors.New("page bytes not in store")
	// ErrStoreFull: no tier could take a fill, even after eviction (every
	// page left is pinned, or the fill is larger than a tier).
	ErrStoreFull = errors.New("page store full")
	// ErrStoreClosed: the store or cache was closed.
	ErrStoreClosed = errors.New("page store closed")
)

// Class is what the store is told about a file when one of its pages is
// first stored: whether to pin the page and how long to keep it.
type Class struct {
	// Pin keeps the page from eviction until SetPinned unpins it or Evict
	// removes it.
	Pin bool
	// TTL > 0 makes the page a first candidate for eviction once it is
	// older than TTL. An expired page is still correct (its identity
	// includes the file version) and is served until it is evicted.
	TTL time.Duration
}

// StoreConfig configures a page store. At least one tier must be enabled.
type StoreConfig struct {
	// Dir holds the disk tier; "" means no disk tier.
	Dir string
	// MemoryBytes is the memory tier's limit; 0 means no memory tier.
	MemoryBytes int64
	// DiskBytes is the disk tier's limit; required when Dir is set.
	DiskBytes int64
	// PageSize is the size of a page (default DefaultPageSize). BlockSize
	// is the unit of filling and checksumming (default DefaultBlockSize);
	// it must divide PageSize. Pages on disk written with other sizes are
	// removed on open.
	PageSize, BlockSize int64
	// HighWater and LowWater are fractions of each tier's limit (defaults
	// 0.95 and 0.85): a tier that grows past HighWater is evicted down to
	// LowWater in the background.
	HighWater, LowWater float64
	// PretouchMemory has the store fault in the memory tier's page buffers
	// in the background as soon as it opens, so that the first fills of a
	// new node do not pay for fresh memory (see pageBuffers). The node
	// then holds MemoryBytes of memory from the start.
	PretouchMemory bool
	// PackBelow > 0 packs the disk copies of pages shorter than it into
	// shared files instead of a file per page (see pack.go); 0 gives
	// every page a file of its own. Nodes use DefaultPackBelow (every
	// page). Packed pages and page files already on disk are read
	// whatever the setting.
	PackBelow int64
	// Classify is called when a page is first stored (nil: no pin, no TTL).
	// It must not call the store.
	Classify func(FileRef) Class
	// Logger receives the store's events (nil: slog.Default()).
	Logger *slog.Logger
	// DiscardChecked says the caller has already checked Dir's file
	// system for online discard (CheckDiscard) and warned; the store
	// does not warn again. `lakemesh up`, whose nodes share one work
	// directory, warns once for all of them.
	DiscardChecked bool
}

// StoreStats is a snapshot of a store's use and counters.
type StoreStats struct {
	Pages            int   // pages held in any tier
	PinnedPages      int   // of which pinned
	MemoryBytes      int64 // bytes of blocks in the memory tier
	MemoryLimit      int64
	DiskBytes        int64 // bytes of blocks in the disk tier, and of packed pages' slot headers and padding (not page files' records)
	DiskLimit        int64
	MemoryHits       int64 // Reads served from memory only
	DiskHits         int64 // Reads that needed the disk tier
	Misses           int64 // Reads that returned ErrMissing
	CorruptBlocks    int64 // blocks dropped because their checksum failed
	MemoryEvictions  int64 // pages evicted from the memory tier
	DiskEvictions    int64 // pages evicted from the disk tier
	EvictedBytes     int64 // bytes freed by eviction, both tiers
	MemoryAboveWater bool  // memory tier above its high watermark with nothing evictable
	DiskAboveWater   bool  // disk tier above its high watermark with nothing evictable
	// FreshBuffers counts the page buffers fills and promotions took
	// from new memory rather than from the pool of evicted pages'
	// buffers (pretouched ones not counted); BufferCollections the
	// garbage collections the store ran to get evicted buffers back.
	FreshBuffers      int64
	BufferCollections int64
	// PackSlotsReused counts the pack slots of dropped pages that new
	// pages took again.
	PackSlotsReused int64
}

// Store is a node's page store: fixed-size pages of file versions, filled
// block by block, in a memory and a disk tier. It is safe for concurrent
// use. See the package documentation for its design and lock order.
type Store struct {
	cfg      StoreConfig
	geo      geometry
	log      *slog.Logger
	classify func(FileRef) Class

	mem   *tier  // nil without a memory tier
	disk  *tier  // nil without a disk tier
	packs *packs // the disk tier's packs (pack.go); nil without a disk tier

	// bufs recycles the page buffers of fills and promotions; nil
	// without a memory tier. pretouched is closed when its pretouch is
	// done (at once without one); stopPretouch ends it early.
	bufs         *pageBuffers
	pretouched   chan struct{}
	stopPretouch chan struct{}

	// mu guards pages. An entry is in pages exactly while it is not dead.
	mu    sync.RWMutex
	pages map[PageID]*entry

	clock atomic.Int64 // last access stamp handed out, unix nanos

	memHits, diskHits, misses, corrupt atomic.Int64

	// Scratch buffers for disk reads that are not promoted (storeio.go).
	smallScratch, largeScratch sync.Pool

	ev     evictor
	closed atomic.Bool

	// diskGate, set by tests before the store is used, is called before
	// a page's bytes are written to the disk tier: a disk that stalls.
	diskGate func()
}

// entry is the store's record of one page.
type entry struct {
	id      PageID
	ref     FileRef
	length  int64 // bytes of the page
	nblocks int

	lastUse atomic.Int64 // access stamp (Store.tick), for LRU order

	// diskMu serializes writes of this page's data file and record, and
	// their removal. Taken before Store.mu and entry.mu.
	diskMu sync.Mutex

	mu        sync.RWMutex
	crc       []uint32 // per block; valid where a tier holds the block
	mem       [][]byte // per block, nil where memory does not hold it; immutable once set
	memBytes  int64
	disk      bitmap // nil without a disk tier
	diskBytes int64
	slot      *packSlot // the disk copy's pack slot; nil: its own data file (or none)
	slotBytes int64     // what slot takes on disk beyond the blocks (header, padding), charged to the disk tier
	pinned    bool
	expires   int64 // unix nanos; 0 = no TTL
	busy      int   // Puts in progress; a busy entry is never removed
	dead      bool  // removed from Store.pages; never revived
}

func (e *entry) emptyLocked() bool { return e.memBytes == 0 && e.diskBytes == 0 }

// OpenStore opens a page store. With a Dir it rebuilds the index of the
// pages on disk (removing what it cannot read), so a restarted node serves
// them without refetching. The store runs one eviction goroutine until
// Close.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = min(DefaultBlockSize, cfg.PageSize)
	}
	if cfg.HighWater == 0 {
		cfg.HighWater = 0.95
	}
	if cfg.LowWater == 0 {
		cfg.LowWater = 0.85
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.PageSize < 0 || cfg.BlockSize <= 0 || cfg.PageSize%cfg.BlockSize != 0:
		return nil, fmt.Errorf("open page store: block size %d must divide page size %d", cfg.BlockSize, cfg.PageSize)
	case !(0 < cfg.LowWater && cfg.LowWater <= cfg.HighWater && cfg.HighWater <= 1):
		return nil, fmt.Errorf("open page store: watermarks must satisfy 0 < low (%v) <= high (%v) <= 1", cfg.LowWater, cfg.HighWater)
	case cfg.MemoryBytes < 0 || cfg.DiskBytes < 0:
		return nil, fmt.Errorf("open page store: negative tier limit")
	case cfg.Dir != "" && cfg.DiskBytes == 0:
		return nil, fmt.Errorf("open page store %s: disk tier needs DiskBytes", cfg.Dir)
	case cfg.Dir == "" && cfg.MemoryBytes == 0:
		return nil, fmt.Errorf("open page store: no tier configured (set MemoryBytes or Dir)")
	}
	s := &Store{
		cfg:      cfg,
		geo:      geometry{pageSize: cfg.PageSize, blockSize: cfg.BlockSize},
		log:      cfg.Logger,
		classify: cfg.Classify,
		pages:    make(map[PageID]*entry),
	}
	if s.classify == nil {
		s.classify = func(FileRef) Class { return Class{} }
	}
	s.pretouched, s.stopPretouch = make(chan struct{}), make(chan struct{})
	if cfg.MemoryBytes > 0 {
		s.mem = newTier(TierMemory, cfg.MemoryBytes, cfg.HighWater, cfg.LowWater)
		// The tier's pages, and up to 64 more in flight: fills, and
		// evicted pages the garbage collector has not given back yet.
		pages := int((cfg.MemoryBytes + cfg.PageSize - 1) / cfg.PageSize)
		s.bufs = newPageBuffers(cfg.PageSize, pages+min(pages, 64))
	}
	if cfg.Dir != "" {
		s.disk = newTier(TierDisk, cfg.DiskBytes, cfg.HighWater, cfg.LowWater)
		s.packs = newPacks(cfg.Dir, cfg.PackBelow, cfg.DiskBytes, cfg.Logger)
		if err := s.loadIndex(); err != nil {
			s.packs.close()
			return nil, fmt.Errorf("open page store %s: %w", cfg.Dir, err)
		}
		if !cfg.DiscardChecked {
			WarnIfDiscard(s.log, cfg.Dir)
		}
	}
	s.ev.start(s)
	if s.bufs != nil && cfg.PretouchMemory {
		pages := int(cfg.MemoryBytes / cfg.PageSize)
		go func() {
			defer close(s.pretouched)
			n, took := s.bufs.pretouch(pages, s.stopPretouch)
			s.log.Info("memory tier pretouched", "bytes", n, "took", took.Round(time.Millisecond))
		}()
	} else {
		close(s.pretouched)
	}
	if s.disk != nil && s.disk.usedBytes() > s.disk.high {
		s.ev.wake() // loaded more than the (maybe lowered) limit allows
	}
	return s, nil
}

// Close stops the eviction goroutine. Every disk page is already complete
// on disk (records are written with each fill), so nothing is flushed.
// Calls after Close fail with ErrStoreClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.ev.stop()
	if s.packs != nil {
		s.packs.close()
	}
	close(s.stopPretouch)
	<-s.pretouched
	s.bufs.close()
	return nil
}

// PageSize is the store's page size.
func (s *Store) PageSize() int64 { return s.geo.pageSize }

// BlockSize is the store's block size.
func (s *Store) BlockSize() int64 { return s.geo.blockSize }

// PageLen is the length of page index of ref: PageSize except for the
// file's last page; 0 past the end of the file.
func (s *Store) PageLen(ref FileRef, index int64) int64 { return s.geo.pageLen(ref.Size, index) }

// Stats returns a snapshot of the store's use and counters.
func (s *Store) Stats() StoreStats {
	st := StoreStats{
		MemoryHits:    s.memHits.Load(),
		DiskHits:      s.diskHits.Load(),
		Misses:        s.misses.Load(),
		CorruptBlocks: s.corrupt.Load(),
	}
	s.mu.RLock()
	st.Pages = len(s.pages)
	for _, e := range s.pages {
		e.mu.RLock()
		if e.pinned {
			st.PinnedPages++
		}
		e.mu.RUnlock()
	}
	s.mu.RUnlock()
	if s.bufs != nil {
		st.FreshBuffers, st.BufferCollections = s.bufs.fresh.Load(), s.bufs.collections.Load()
	}
	if t := s.mem; t != nil {
		st.MemoryBytes, st.MemoryLimit, st.MemoryAboveWater = t.snapshot()
		st.MemoryEvictions, st.EvictedBytes = t.evictions.Load(), t.evictedBytes.Load()
	}
	if t := s.disk; t != nil {
		st.DiskBytes, st.DiskLimit, st.DiskAboveWater = t.snapshot()
		st.DiskEvictions = t.evictions.Load()
		st.EvictedBytes += t.evictedBytes.Load()
	}
	if s.packs != nil {
		st.PackSlotsReused = s.packs.reused.Load()
	}
	return st
}

// tick returns a strictly increasing access stamp close to the wall clock,
// so that LRU order is exact even when two accesses share a clock reading.
func (s *Store) tick() int64 {
	now := time.Now().UnixNano()
	for {
		last := s.clock.Load()
		next := max(now, last+1)
		if s.clock.CompareAndSwap(last, next) {
			return next
		}
	}
}

func (s *Store) lookup(id PageID) *entry {
	s.mu.RLock()
	e := s.pages[id]
	s.mu.RUnlock()
	return e
}

// acquire returns the live entry of a page, creating it (and classifying
// its file) if the store has none, with busy incremented so that it cannot
// be removed until release.
func (s *Store) acquire(ref FileRef, index, length int64) *entry {
	id := PageID{File: ref.ID(), Index: index}
	for {
		if e := s.lookup(id); e != nil {
			e.mu.Lock()
			if !e.dead {
				e.busy++
				e.mu.Unlock()
				return e
			}
			e.mu.Unlock()
			continue
		}
		class := s.classify(ref) // user code: outside every lock
		fresh := s.newEntry(id, ref, length, class)
		fresh.busy = 1
		s.mu.Lock()
		if e := s.pages[id]; e != nil {
			s.mu.Unlock()
			continue // lost a race with another creator; use theirs
		}
		s.pages[id] = fresh
		s.mu.Unlock()
		return fresh
	}
}

func (s *Store) newEntry(id PageID, ref FileRef, length int64, class Class) *entry {
	n := s.geo.blocks(length)
	e := &entry{id: id, ref: ref, length: length, nblocks: n, crc: make([]uint32, n), pinned: class.Pin}
	if class.TTL > 0 {
		e.expires = time.Now().Add(class.TTL).UnixNano()
	}
	if s.disk != nil {
		e.disk = newBitmap(n)
	}
	e.lastUse.Store(s.tick())
	return e
}

// release ends a Put's hold on an entry and removes the entry if it holds
// nothing.
func (s *Store) release(e *entry) {
	e.mu.Lock()
	e.busy--
	empty := e.busy == 0 && e.emptyLocked()
	e.mu.Unlock()
	if empty {
		s.removeIfEmpty(e, true)
	}
}

// removeIfEmpty removes an entry that holds no block in any tier and has no
// Put in progress, with its files. The evictor calls it with wait false: a
// Put holding diskMu may be waiting for the evictor, and that Put removes
// the entry itself when it ends, if it is still empty.
func (s *Store) removeIfEmpty(e *entry, wait bool) {
	if wait {
		e.diskMu.Lock()
	} else if !e.diskMu.TryLock() {
		return
	}
	defer e.diskMu.Unlock()
	s.mu.Lock()
	e.mu.Lock()
	if e.dead || e.busy > 0 || !e.emptyLocked() {
		e.mu.Unlock()
		s.mu.Unlock()
		return
	}
	e.dead = true
	if s.pages[e.id] == e {
		delete(s.pages, e.id)
	}
	e.mu.Unlock()
	s.mu.Unlock()
	if s.disk != nil {
		s.removePageFiles(e)
	}
}
